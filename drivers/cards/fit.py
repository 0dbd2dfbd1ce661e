"""Fit a card profile from recorded runs of a real card (``safelab card fit RUN``).

A profile (``profiles/cards/*.toml``) is the emulator's latency model: a link cost per APDU and
a card time per command and crypto operation. A recorded run only holds per-phase times
(open, login, find, sign_init, sign), so the fit has to say how a phase's time splits into link
and card, and which command gets what. The method, in the order :func:`fit_profile` applies it:

1. **Link model kept.** The base profile's link (``[transport]``), the commands the fit does not
   touch (GET RESPONSE, the phases no run covers), on-card hashing, curve factors and quirks stay
   as they are. A run cannot separate link from card time, so one of them has to come from
   somewhere; the link is the part a lab knows best (modem baud rate, I2C clock).
2. **Fixed part measured, not guessed.** The real token flow runs on the emulator with the base
   profile in which the fitted commands and ECDSA are zero, delays only recorded
   (:class:`~drivers.cards.emulator.delay.RecordingDelay`). Each phase's modelled time is then
   exactly what the kept parts cost (per-APDU link time by bytes moved, GET RESPONSE, hashing),
   for the same APDUs, hash side and data length as the run.
3. **Heavy tail first.** A trial far above the body (total above median + 6·MAD·1.4826, a
   robust 6 σ) is a tail trial. Its phase is the one furthest above its own body median; the
   tail's probability is (tail trials in that phase) / n and its size is the excess over that
   phase's body median, a normal from those excesses (a constant for a single one). The tail
   goes on the phase's slowest command (``select`` for open, ``ecdsa_sign`` for sign).
4. **Body by moments.** Without the tail trials, each phase's card time is mean(run) −
   mean(fixed part) and its variance var(run) − var(fixed part) (both floored at zero, with a
   note). It is split over the phase's commands (and ECDSA for sign) in the proportions of the
   base profile's means (variance in proportion to the base variances), as normal
   distributions. Means therefore come back by construction; σ and percentiles are what the
   comparison checks.

Phases and runs: a ``sign_only`` run fixes sign_init (COMPUTE SIGNATURE INIT) and sign
(UPDATE + ECDSA); a ``total`` run fixes open (MANAGE CHANNEL + SELECT) and find (GET DATA), and
sign_init/sign too unless a sign_only run is also given (the paper's sign_only is the cleaner
measure of signing). Several runs of one mode are pooled. Login: ``C_Login`` of a PKCS#11 run
(and the login phase of any run) is added to open; the emulator's default flow sends no APDU
for login, and a SIM's PIN check is a short card command like SELECT, so it becomes card time
of the open phase (documented in the profile's comments).

After the fit, :func:`drivers.cards.emulator.predict.modelled_trials` runs the fitted profile
and :class:`FitResult` compares its statistics with the run's (mean, σ, P50/P90/P99, share over
1 s), so a poor fit is visible rather than silent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drivers.bench.store import ResultsStore, RunRecord
from drivers.cards.emulator.delay import RecordingDelay
from drivers.cards.emulator.predict import PAPER_DATA, modelled_trials
from drivers.cards.emulator.profile import ZERO, CardProfile, Dist, load_profile
from drivers.errors import SafeLabError
from drivers.tokens.base import CURVE_ALIASES, HashOn
from drivers.tokens.spec import parse_spec

MIN_SAMPLES = 20
"""Fewer trials than this give no usable σ, let alone a tail."""

TAIL_K = 6.0
"""Tail threshold in robust σ (1.4826·MAD) above the median of the trial totals."""

MAD_TO_SIGMA = 1.4826
"""MAD of a normal distribution times this is its σ."""

THRESHOLD_MS = 1000.0
"""The paper's ">1 s" column."""

CRYPTO = "crypto.ecdsa_sign"
"""Component name of the ECDSA operation (the sign phase's card work besides its commands)."""

SHARED_COMMANDS = frozenset({"get_response", "default"})
"""Commands sent by several phases: kept from the base profile, never fitted."""

MODE_PHASES: dict[str, tuple[str, ...]] = {
    "sign_only": ("sign_init", "sign"),
    "total": ("open", "find", "sign_init", "sign"),
}
"""Phases each mode's trials time (login is folded into open, see the module docstring)."""

_FLOW_ATTRS = ("find", "key", "object", "id", "channel", "cla", "session", "token-hash", "curves")
"""Attributes of an ``iotsafe:`` run's spec that change which APDUs a phase sends."""

_KEY_ATTRS = ("key=", "object=", "id=")


# ------------------------------------------------------------------------------- errors


class FitError(SafeLabError):
    """Runs that cannot be fitted as asked."""


class NotACardRunError(FitError):
    """A run of a software key or a baseline mode: there is no card in it."""


class EmulatedRunError(FitError):
    """A run of the emulator: fitting the emulator to itself says nothing about a card."""


class TooFewSamplesError(FitError):
    """A run with fewer than :data:`MIN_SAMPLES` trials."""


class MissingPhasesError(FitError):
    """A run whose samples lack the per-phase times the fit splits."""


class MixedRunsError(FitError):
    """Runs of different cards, or of one mode with different hash side or data length."""


# ------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class ModeStats:
    """The paper's Table 3 row for a list of trial times (ms)."""

    n: int
    mean_ms: float
    stdev_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    over_1s: float
    """Share of trials above 1 s (0..1)."""

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> ModeStats:
        """Mean, sample σ (n−1), nearest-rank percentiles as in ``drivers.bench.stats``."""
        values = np.asarray(values_ms, dtype=float)
        p50, p90, p99 = np.percentile(values, [50, 90, 99], method="inverted_cdf")
        return cls(
            n=len(values),
            mean_ms=float(values.mean()),
            stdev_ms=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            over_1s=float((values > THRESHOLD_MS).mean()),
        )

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


STAT_FIELDS = ("mean_ms", "stdev_ms", "p50_ms", "p90_ms", "p99_ms", "over_1s")


@dataclass(frozen=True)
class ModeComparison:
    """A mode's recorded statistics next to what the fitted profile models for it."""

    mode: str
    run_ids: tuple[int, ...]
    run: ModeStats
    model: ModeStats

    def rel_diff(self, stat: str) -> float:
        """(model − run) / run for one of :data:`STAT_FIELDS` (``inf`` if run is 0 and not model).

        For ``over_1s`` (a share) this is relative too; use the two values for small shares.
        """
        run, model = getattr(self.run, stat), getattr(self.model, stat)
        if run == 0:
            return 0.0 if model == 0 else math.inf
        return (model - run) / run

    def rows(self) -> list[tuple[str, float, float]]:
        """``(stat, run, model)`` rows for a table."""
        return [(s, getattr(self.run, s), getattr(self.model, s)) for s in STAT_FIELDS]


@dataclass(frozen=True)
class FitResult:
    """A fitted profile (TOML text and loaded), how it compares with the runs, and notes."""

    name: str
    toml: str
    profile: CardProfile
    run_ids: tuple[int, ...]
    base_profile: str
    comparisons: dict[str, ModeComparison]
    notes: tuple[str, ...] = ()

    def save(self, path: Path | str) -> Path:
        """Write the TOML (``load_profile(path)`` reads it back)."""
        target = Path(path).expanduser()
        target.write_text(self.toml, encoding="utf-8")
        return target


# ------------------------------------------------------------------------------- modelled phases


def modelled_phase_trials(
    profile: str,
    mode: str,
    *,
    trials: int,
    seed: int = 0,
    hash_on: HashOn = HashOn.HOST,
    data: bytes = PAPER_DATA,
    spec_extra: str = "",
) -> tuple[list[dict[str, float]], dict[str, list[str]]]:
    """Modelled ms per phase of each trial, and the commands each phase sent (first trial).

    The same flow as :func:`~drivers.cards.emulator.predict.modelled_trials` (whose totals are
    the sums of these phases for equal arguments), read phase by phase: the fit needs to know
    what the kept parts of a profile cost in each phase and which APDUs each phase sends.
    """
    from drivers.cards.iotsafe_token import emulated_token, parse_options

    if mode not in MODE_PHASES:
        raise ValueError(f"mode {mode!r} is not sign_only or total")
    options = parse_options(
        f"iotsafe:emulated;profile={profile};speed=1;seed={seed};card=predict{spec_extra}"
    )
    delay = RecordingDelay()
    token = emulated_token(options, delay=delay)
    applet = token.applet
    assert applet is not None
    results: list[dict[str, float]] = []
    commands: dict[str, list[str]] = {}

    def timed(phase: str, times: dict[str, float], call: Any) -> Any:
        before, seen = delay.total_ns, len(applet.samples)
        value = call()
        times[phase] = (delay.total_ns - before) / 1e6
        if not results:
            commands[phase] = [s.command for s in list(applet.samples)[seen:]]
        return value

    try:
        session = None
        if mode == "sign_only":
            session = token.open()
            session.login(None)
            key = session.find_key()
        for _ in range(trials):
            times: dict[str, float] = {}
            if mode == "total":
                session = timed("open", times, token.open)
                session.login(None)
                key = timed("find", times, session.find_key)
            assert session is not None
            timed("sign_init", times, lambda s=session, k=key: s.sign_init(k, hash_on))
            timed("sign", times, lambda s=session: s.sign(data))
            if mode == "total":
                session.close()
            results.append(times)
        if mode == "sign_only" and session is not None:
            session.close()
    finally:
        token.close()
    return results, commands


# ------------------------------------------------------------------------------- TOML


def _num(value: float, digits: int = 4) -> str:
    """A TOML float, rounded for people to read (never an integer literal)."""
    text = repr(round(float(value), digits))
    return text if any(c in text for c in ".en") else text + ".0"


def dist_toml(dist: Dist) -> str:
    """A :class:`Dist` as the inline table the profile format reads."""
    parts = [f'dist = "{dist.kind}"', *(f"{k} = {_num(v)}" for k, v in dist.params.items())]
    if dist.min_ms:
        parts.append(f"min_ms = {_num(dist.min_ms)}")
    if dist.tail is not None and dist.tail_p > 0:
        inner = dist_toml(dist.tail)[2:-2]
        parts.append(f"tail = {{ p = {_num(dist.tail_p, 5)}, {inner} }}")
    return "{ " + ", ".join(parts) + " }"


def _quirk_toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string, escapes included


def _comment(text: str) -> list[str]:
    """Comment lines, wrapped at 98 columns (lines starting with two spaces are kept as is)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("  ") or len(line) <= 96:
            lines.append(f"# {line}".rstrip())
        else:
            lines += [f"# {part}" for part in textwrap.wrap(line, 96, subsequent_indent="  ")]
    return lines


def profile_toml(
    profile: CardProfile,
    *,
    header: str = "",
    notes: dict[str, str] | None = None,
) -> str:
    """A whole :class:`CardProfile` as profile TOML; ``notes`` comment single entries.

    ``notes`` keys are ``commands.NAME`` or ``crypto.NAME``; each note goes above its line.
    """
    notes = notes or {}
    lines = [*_comment(header), ""] if header else []
    lines += [
        "[profile]",
        f"name = {_quirk_toml(profile.name)}",
        f"description = {_quirk_toml(profile.description)}",
        "",
        "[transport]",
        f"base = {dist_toml(profile.transport_base)}",
        f"per_byte_us = {_num(profile.transport_per_byte_us)}",
        "",
        "[card]",
        f"default = {dist_toml(profile.card_default)}",
        f"hash_per_byte_us = {_num(profile.hash_per_byte_us)}",
    ]
    if profile.curve_factor:
        factors = ", ".join(f"{k} = {_num(v)}" for k, v in profile.curve_factor.items())
        lines.append(f"curve_factor = {{ {factors} }}")
    for section, table in (("commands", profile.commands), ("crypto", profile.crypto)):
        lines += ["", f"[card.{section}]"]
        for key, dist in table.items():
            lines += _comment(notes.get(f"{section}.{key}", ""))
            lines.append(f"{key} = {dist_toml(dist)}")
    lines += ["", "[quirks]"]
    lines += [f"{key} = {_quirk_toml(value)}" for key, value in profile.quirks.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- runs


@dataclass
class _Group:
    """The pooled trials of one mode."""

    mode: str
    runs: list[RunRecord] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.totals)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(run.id for run in self.runs)

    @property
    def hash_on(self) -> HashOn:
        return HashOn(self.runs[0].hash_on or "host")

    @property
    def data(self) -> bytes:
        length = self.runs[0].data_len
        return PAPER_DATA if length == len(PAPER_DATA) else bytes(length)


def _identity(run: RunRecord) -> tuple[str, ...]:
    token = run.token
    return (run.token_kind, *(str(token.get(k, "")) for k in ("manufacturer", "model", "serial")))


def _check_run(run: RunRecord, allow_emulated: bool) -> None:
    if run.token_kind in ("software", "openssl-cli") or run.mode not in MODE_PHASES:
        raise NotACardRunError(
            f"run {run.id} measured mode {run.mode} on a {run.token_kind or 'unknown'} token, "
            "not a card's sign_only or total",
            "fit a sign_only or total run of an IoT SAFE card or PKCS#11 token",
        )
    if run.emulated and not allow_emulated:
        raise EmulatedRunError(
            f"run {run.id} was made on an emulated card ({run.token_uri}); fitting the "
            "emulator to itself says nothing about a real card",
            "fit a run of a real card, or pass --allow-emulated (allow_emulated=True) "
            "to test the fit itself",
        )
    if run.n_samples < MIN_SAMPLES:
        raise TooFewSamplesError(
            f"run {run.id} has {run.n_samples} trials; a fit needs at least {MIN_SAMPLES}",
            f"record a longer run (the paper used 100: safelab sign --mode {run.mode} -n 100)",
        )


def _read_group(store: ResultsStore, runs: list[RunRecord]) -> _Group:
    group = _Group(runs[0].mode)
    wanted = MODE_PHASES[group.mode]
    group.phases = {phase: [] for phase in wanted}
    for run in runs:
        if (run.hash_on, run.data_len) != (runs[0].hash_on, runs[0].data_len):
            raise MixedRunsError(
                f"runs {runs[0].id} and {run.id} ({group.mode}) differ in hash side or data "
                f"length ({runs[0].hash_on}/{runs[0].data_len} B vs {run.hash_on}/"
                f"{run.data_len} B), so their sign phases sent different APDUs",
                "fit runs made with the same --hash-on and data, or fit them separately",
            )
        group.runs.append(run)
        for idx, total_ns, phase_ns in store.samples(run.id):
            missing = [p for p in wanted if p not in phase_ns]
            if missing:
                raise MissingPhasesError(
                    f"run {run.id} trial {idx} has no {', '.join(missing)} time; the fit "
                    "splits per-phase times over the APDUs each phase sends",
                    "record the run again with a SAFE Lab version that stores phase times",
                )
            group.totals.append(total_ns / 1e6)
            for phase in wanted:
                value = phase_ns[phase]
                if phase == "open":
                    value += phase_ns.get("login", 0)
                group.phases[phase].append(value / 1e6)
    return group


def _flow(run: RunRecord, quirks: dict[str, Any]) -> str:
    """Spec attributes that make the emulated flow send the run's APDUs (fills ``quirks``)."""
    extra: list[str] = []
    if run.token_kind == "iotsafe":
        spec = parse_spec(run.token_uri)
        for name, value in spec.attrs.items():
            if name in _FLOW_ATTRS:
                extra.append(f"{name}={value}")
            elif name.startswith(("quirk-", "quirk.")):
                quirks[name[6:].replace("-", "_")] = value
    curve = CURVE_ALIASES.get(str(run.extra.get("curve", "secp256r1")).lower())
    if curve == "brainpoolP256r1" and not any(p.startswith(_KEY_ATTRS) for p in extra):
        # The emulated lab card (provision_lab_card) signs with P-256 key 01 unless told;
        # its brainpool signing key is "client-bp".
        extra = [p for p in extra if not p.startswith("curves=")]
        extra += ["curves=secp256r1,brainpoolP256r1", "key=client-bp"]
    return "".join(f";{part}" for part in extra)


def _typed_quirks(base: CardProfile, raw: dict[str, Any]) -> dict[str, Any]:
    """Quirks from a spec (text) in the types the profile wants."""
    typed: dict[str, Any] = {}
    for name, value in raw.items():
        default = base.quirks.get(name)
        if isinstance(default, bool):
            typed[name] = str(value).lower() in ("true", "1", "yes")
        elif isinstance(default, int):
            typed[name] = int(value, 0)
        else:
            typed[name] = value
    return typed


# ------------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class _Tail:
    p: float
    dist: Dist
    count: int
    excess_ms: tuple[float, ...]


def _robust_threshold(values: np.ndarray) -> float:
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    scale = MAD_TO_SIGMA * mad if mad > 0 else 0.01 * abs(median)
    return median + TAIL_K * scale


def _split_tail(group: _Group) -> tuple[np.ndarray, dict[str, _Tail]]:
    """Body mask of the trials, and a tail per phase that carried tail trials."""
    totals = np.asarray(group.totals)
    body = totals <= _robust_threshold(totals)
    phases = {p: np.asarray(v) for p, v in group.phases.items()}
    medians = {p: float(np.median(v[body])) for p, v in phases.items()}
    excess: dict[str, list[float]] = {}
    for idx in np.flatnonzero(~body):
        over = {p: phases[p][idx] - medians[p] for p in phases}
        culprit = max(over, key=lambda p: over[p])
        excess.setdefault(culprit, []).append(float(over[culprit]))
    tails = {}
    for phase, values in excess.items():
        if len(values) == 1:
            dist = Dist("constant", {"ms": values[0]})
        else:
            dist = Dist(
                "normal",
                {"mean_ms": float(np.mean(values)), "sigma_ms": float(np.std(values, ddof=1))},
            )
        tails[phase] = _Tail(len(values) / group.n, dist, len(values), tuple(values))
    return body, tails


def _components(phase: str, commands: Iterable[str]) -> Counter[str]:
    """What a phase's card time is split over: its own commands, plus ECDSA for sign."""
    counts = Counter(f"commands.{c}" for c in commands if c not in SHARED_COMMANDS)
    if phase == "sign":
        counts[CRYPTO] = 1
    return counts


def _base_dist(profile: CardProfile, component: str) -> Dist:
    section, name = component.split(".", 1)
    if section == "crypto":
        return profile.crypto.get(name, ZERO)
    return profile.commands.get(name, profile.card_default)


def _normal_sd(dist: Dist) -> float:
    """σ of a base distribution's body (what the variance split weighs by)."""
    p = dist.params
    if dist.kind == "normal":
        return p["sigma_ms"]
    if dist.kind == "lognormal":
        return dist.mean_ms * math.sqrt(math.exp(p["sigma"] ** 2) - 1)
    if dist.kind == "uniform":
        return (p["high_ms"] - p["low_ms"]) / math.sqrt(12)
    if dist.kind == "exponential":
        return p["mean_ms"]
    return 0.0


def _with(profile: CardProfile, dists: dict[str, Dist], name: str, description: str) -> CardProfile:
    commands = dict(profile.commands)
    crypto = dict(profile.crypto)
    for component, dist in dists.items():
        section, key = component.split(".", 1)
        (crypto if section == "crypto" else commands)[key] = dist
    return dataclasses.replace(  # tail_on="": the fit places its own tail, not the base's [tail]
        profile, name=name, description=description, commands=commands, crypto=crypto, tail_on=""
    )


def fit_profile(
    store: ResultsStore,
    run_ids: list[int],
    *,
    name: str,
    base_profile: str = "paper-sim",
    allow_emulated: bool = False,
    model_trials: int = 2000,
    seed: int = 0,
) -> FitResult:
    """Fit a card profile to recorded runs of one card (see the module docstring for how).

    ``run_ids``: sign_only and/or total runs (several of one mode are pooled). ``base_profile``
    gives the link model, the unfitted commands and the quirks. ``model_trials`` modelled
    trials per mode (fixed ``seed``) give the comparison. Raises a :class:`FitError` subclass
    for runs that cannot be fitted, :class:`~drivers.errors.StoreError` for unknown runs and
    :class:`~drivers.cards.errors.ProfileError` for an unknown base profile.
    """
    if not run_ids:
        raise FitError("no run to fit", "name one or more run IDs (see `safelab runs list`)")
    if not name or any(c in name for c in '/;\\"\n') or name.startswith("."):
        raise FitError(f"profile name {name!r} is not usable", "use letters, digits and -")
    base = load_profile(base_profile)
    runs = [store.get_run(run_id) for run_id in dict.fromkeys(run_ids)]
    for run in runs:
        _check_run(run, allow_emulated)
    for run in runs[1:]:
        if _identity(run) != _identity(runs[0]):
            raise MixedRunsError(
                f"runs {runs[0].id} and {run.id} were made on different tokens "
                f"({runs[0].token_uri} vs {run.token_uri})",
                "fit the runs of one card together, and other cards separately",
            )
    notes: list[str] = []
    raw_quirks: dict[str, Any] = {}
    flows = {run.mode: _flow(run, raw_quirks) for run in runs}
    base = base.with_quirks(**_typed_quirks(base, raw_quirks)) if raw_quirks else base
    groups = {
        mode: _read_group(store, [r for r in runs if r.mode == mode])
        for mode in MODE_PHASES
        if any(r.mode == mode for r in runs)
    }
    for run in runs:
        if run.status != "complete":
            notes.append(f"run {run.id} is {run.status} ({run.reason}); its trials are used")
        if run.emulated:
            notes.append(f"run {run.id} is emulated ({run.token_uri}): a test of the fit only")
    if any(run.token_kind == "pkcs11" for run in runs):
        notes.append(
            "PKCS#11 run: C_OpenSession + C_Login are taken as open (MANAGE CHANNEL + SELECT), "
            "C_FindObjects as find (GET DATA), C_SignInit as COMPUTE SIGNATURE INIT, C_Sign as "
            "UPDATE (+ GET RESPONSE); the vendor library's host time becomes card time"
        )
    # Which group fits which phase: sign phases from sign_only when there is one.
    source = {phase: "total" for phase in MODE_PHASES["total"]} if "total" in groups else {}
    if "sign_only" in groups:
        source.update({phase: "sign_only" for phase in MODE_PHASES["sign_only"]})

    with tempfile.TemporaryDirectory(prefix="safelab-fit-") as tmp:
        workdir = Path(tmp)

        def write(profile: CardProfile, stem: str, **kw: Any) -> str:
            path = workdir / f"{stem}.toml"
            path.write_text(profile_toml(profile, **kw), encoding="utf-8")
            return str(path)

        base_path = write(base, "base")
        # 1. Which commands each phase sends (the run's flow, on the base profile).
        parts: dict[str, Counter[str]] = {}
        for phase, mode in source.items():
            group = groups[mode]
            _, commands = modelled_phase_trials(
                base_path,
                mode,
                trials=1,
                seed=seed,
                hash_on=group.hash_on,
                data=group.data,
                spec_extra=flows[mode],
            )
            parts[phase] = _components(phase, commands[phase])
        zeroed = {c: Dist("constant", {"ms": 0.0}) for cs in parts.values() for c in cs}
        zero_path = write(_with(base, zeroed, "fit-zero", ""), "zero")
        # 2. What the kept parts cost per phase.
        fixed: dict[str, tuple[float, float]] = {}
        for mode in set(source.values()):
            group = groups[mode]
            trials, _ = modelled_phase_trials(
                zero_path,
                mode,
                trials=max(200, group.n),
                seed=seed + 1,
                hash_on=group.hash_on,
                data=group.data,
                spec_extra=flows[mode],
            )
            for phase in MODE_PHASES[mode]:
                if source.get(phase) == mode:
                    values = np.asarray([t[phase] for t in trials])
                    fixed[phase] = (float(values.mean()), float(values.var(ddof=1)))
        # 3 + 4. Tail and body per phase, split over the phase's components.
        fitted: dict[str, Dist] = {}
        derivation: dict[str, str] = {}
        splits = {mode: _split_tail(group) for mode, group in groups.items()}
        for mode, (_, tails) in splits.items():
            for phase, tail in tails.items():
                if source.get(phase) != mode:
                    notes.append(
                        f"{tail.count} tail trial(s) of the {mode} run(s) lie in {phase}, which "
                        f"the {source.get(phase)} run(s) fit; that tail is not modelled"
                    )
        for phase, mode in source.items():
            group = groups[mode]
            body, tails = splits[mode]
            values = np.asarray(group.phases[phase])[body]
            run_mean, run_var = float(values.mean()), float(values.var(ddof=1))
            fixed_mean, fixed_var = fixed[phase]
            card_mean = run_mean - fixed_mean
            card_var = run_var - fixed_var
            if card_mean <= 0:
                notes.append(
                    f"{phase}: the base profile's link and kept commands alone ({fixed_mean:.3f}"
                    f" ms) take longer than the run's {phase} ({run_mean:.3f} ms); its card time "
                    f"is set to 0. Choose a base profile with a faster link (e.g. discrete-se)"
                )
                card_mean = 0.0
            if card_var < 0:
                notes.append(
                    f"{phase}: the run varies less (σ {math.sqrt(run_var):.3f} ms) than the base "
                    f"link alone (σ {math.sqrt(fixed_var):.3f} ms); its card time gets σ 0"
                )
                card_var = 0.0
            counts = parts[phase]
            if not counts:
                notes.append(f"{phase}: the flow sends no card command in it; not fitted")
                continue
            base_dists = {c: _base_dist(base, c) for c in counts}
            factor = base.curve_factor.get(_curve(group), 1.0)
            weight = {
                c: counts[c] * base_dists[c].mean_ms * (factor if c == CRYPTO else 1.0)
                for c in counts
            }
            var_weight = {
                c: counts[c] * (_normal_sd(base_dists[c]) * (factor if c == CRYPTO else 1.0)) ** 2
                for c in counts
            }
            slowest = max(counts, key=lambda c: weight[c])
            if sum(weight.values()) <= 0:
                weight = {c: float(c == slowest) for c in counts}
            if sum(var_weight.values()) <= 0:
                var_weight = {c: float(c == slowest) for c in counts}
            tail = tails.get(phase)
            for c in counts:
                scale = factor if c == CRYPTO else 1.0
                share = weight[c] / sum(weight.values())
                var_share = var_weight[c] / sum(var_weight.values())
                mean = share * card_mean / counts[c] / scale
                sigma = math.sqrt(var_share * card_var / counts[c]) / scale
                dist = Dist("normal", {"mean_ms": mean, "sigma_ms": sigma})
                text = (
                    f"{phase} phase of run(s) {_ids(group)} ({mode}, {int(body.sum())} body "
                    f"trials): mean {run_mean:.3f} ms, σ {math.sqrt(run_var):.3f} ms; base "
                    f"link and kept commands {fixed_mean:.3f} ms, σ {math.sqrt(fixed_var):.3f}"
                    f" ms; card time {card_mean:.3f} ms, σ {math.sqrt(card_var):.3f} ms; "
                    f"{share:.1%} of the mean and {var_share:.1%} of the variance to "
                    f"{c.split('.', 1)[1]}"
                    + (f" ({counts[c]} APDUs)" if counts[c] > 1 else "")
                    + (f", ÷ curve factor {factor:g} ({_curve(group)})" if scale != 1 else "")
                )
                if tail is not None and c == slowest:
                    tail_dist = Dist(
                        tail.dist.kind, {k: v / scale for k, v in tail.dist.params.items()}
                    )
                    dist = dataclasses.replace(dist, tail_p=tail.p, tail=tail_dist)
                    text += (
                        f"\ntail: {tail.count} of {group.n} trials above median + {TAIL_K:g}·"
                        f"1.4826·MAD of the totals had most of their excess in {phase}; "
                        f"p = {tail.count}/{group.n}, excess over the {phase} body median "
                        + ", ".join(f"{e:.1f}" for e in tail.excess_ms[:8])
                        + (" ..." if tail.count > 8 else "")
                        + " ms"
                    )
                fitted[c] = dist
                derivation[c] = text
        description = (
            f"fitted to run(s) {', '.join(str(i) for i in _all_ids(groups))} of "
            f"{runs[0].token.get('label') or runs[0].token_uri}, link of {base.name}"
        )
        result_profile = _with(base, fitted, name, description)
        header = _header(name, base, groups, source)
        draft_path = write(result_profile, "draft", header=header, notes=derivation)
        comparisons = {}
        for mode, group in groups.items():
            model = modelled_trials(
                draft_path,
                mode,
                trials=model_trials,
                seed=seed + 2,
                hash_on=group.hash_on,
                spec_extra=flows[mode],
                data=group.data,
            )
            comparisons[mode] = ModeComparison(
                mode, group.ids, ModeStats.of(group.totals), ModeStats.of(model)
            )
        header += "\n\n" + _comparison_text(comparisons, model_trials, seed + 2)
        if notes:
            header += "\n\nNotes:\n" + "\n".join(f"- {note}" for note in notes)
        text = profile_toml(result_profile, header=header, notes=derivation)
        final = workdir / f"{name}.toml"
        final.write_text(text, encoding="utf-8")
        loaded = load_profile(final)
    return FitResult(
        name=name,
        toml=text,
        profile=dataclasses.replace(loaded, source=f"(fitted: {name})"),
        run_ids=tuple(run.id for run in runs),
        base_profile=base.name,
        comparisons=comparisons,
        notes=tuple(notes),
    )


def _curve(group: _Group) -> str:
    curve = str(group.runs[0].extra.get("curve", "secp256r1"))
    return CURVE_ALIASES.get(curve.lower(), curve)


def _ids(group: _Group) -> str:
    return ", ".join(str(i) for i in group.ids)


def _all_ids(groups: dict[str, _Group]) -> list[int]:
    """All run IDs of the groups, in mode order."""
    return [i for group in groups.values() for i in group.ids]


def _header(
    name: str,
    base: CardProfile,
    groups: dict[str, _Group],
    source: dict[str, str],
) -> str:
    lines = [
        f"SAFE Lab card profile {name!r}, fitted by `safelab card fit` "
        f"on {time.strftime('%Y-%m-%d %H:%M')}.",
        "Runs:",
    ]
    for group in groups.values():
        for run in group.runs:
            lines.append(
                f"- run {run.id}: {run.mode}, n = {run.n_samples}, hash on {run.hash_on}, "
                f"{run.data_len} B, token {run.token_kind} {run.token_uri}"
                + (" (emulated)" if run.emulated else "")
            )
    fitted = ", ".join(f"{phase} from {mode}" for phase, mode in source.items())
    lines += [
        f"Fitted phases: {fitted}.",
        f"Kept from base profile {base.name!r} ({base.source}): the link ([transport]), GET "
        "RESPONSE and every command of an unfitted phase, on-card hashing, curve factors, other "
        "crypto operations and the quirks.",
        "Method (drivers/cards/fit.py): per phase, card time = run mean - modelled time of the "
        "kept parts for the same APDUs (base profile with the fitted parts at 0); variance "
        "likewise; split over the phase's commands (and ECDSA for sign) in the base profile's "
        f"proportions, as normals. Tail: trials above median + {TAIL_K:g} robust sigma "
        "(1.4826 MAD) of the totals, put on the slowest command of the phase that carried the "
        "excess. Login (C_Login, VERIFY PIN) is counted in open.",
    ]
    return "\n".join(lines)


def _comparison_text(comparisons: dict[str, ModeComparison], trials: int, seed: int) -> str:
    lines = [f"Run vs this profile (predict.modelled_trials, {trials} trials, seed {seed}), ms:"]
    for comparison in comparisons.values():
        for label, stats in (("run", comparison.run), ("model", comparison.model)):
            lines.append(
                f"  {comparison.mode:9} {label:5} n {stats.n:<5} mean {stats.mean_ms:8.2f} "
                f"σ {stats.stdev_ms:7.2f} P50 {stats.p50_ms:8.2f} P90 {stats.p90_ms:8.2f} "
                f"P99 {stats.p99_ms:8.2f} >1 s {stats.over_1s:5.1%}"
            )
    return "\n".join(lines)
