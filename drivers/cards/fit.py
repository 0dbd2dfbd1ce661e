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
import math
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drivers.bench.store import ResultsStore, RunRecord
from drivers.cards import fit_prose as prose
from drivers.cards.emulator.delay import RecordingDelay
from drivers.cards.emulator.predict import PAPER_DATA, modelled_trials
from drivers.cards.emulator.profile import ZERO, CardProfile, Dist, load_profile
from drivers.cards.emulator.profile_toml import profile_toml
from drivers.cards.emulator.quirks import QuirkValue, QuirkValueError, quirk_from_text
from drivers.cards.fit_stats import (
    MAD_TO_SIGMA,
    STAT_FIELDS,
    TAIL_K,
    THRESHOLD_MS,
    ModeComparison,
    ModeStats,
    PhaseMoments,
    Tail,
    body_sd,
    split_tail,
)
from drivers.errors import SafeLabError
from drivers.tokens.base import CURVE_ALIASES, HashOn
from drivers.tokens.spec import parse_spec

__all__ = [
    "MAD_TO_SIGMA",
    "MIN_SAMPLES",
    "STAT_FIELDS",
    "TAIL_K",
    "THRESHOLD_MS",
    "EmulatedRunError",
    "FitError",
    "FitResult",
    "MissingPhasesError",
    "MixedRunsError",
    "ModeComparison",
    "ModeStats",
    "NotACardRunError",
    "TooFewSamplesError",
    "fit_profile",
    "modelled_phase_trials",
]

MIN_SAMPLES = 20
"""Fewer trials than this give no usable σ, let alone a tail."""

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


def _flow(run: RunRecord, quirks: dict[str, str]) -> str:
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


def _typed_quirks(raw: dict[str, str]) -> dict[str, QuirkValue]:
    """Quirks from a run's spec (text) in the types the profile wants."""
    try:
        return {name: quirk_from_text(name, value) for name, value in raw.items()}
    except QuirkValueError as exc:
        raise FitError(
            f"the run's token spec sets quirk {exc.key}, which {exc.problem}",
            "fit runs made with this SAFE Lab version's quirks",
        ) from None


# ------------------------------------------------------------------------------- the fit


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


def _with(profile: CardProfile, dists: dict[str, Dist], name: str, description: str) -> CardProfile:
    commands = dict(profile.commands)
    crypto = dict(profile.crypto)
    for component, dist in dists.items():
        section, key = component.split(".", 1)
        (crypto if section == "crypto" else commands)[key] = dist
    return dataclasses.replace(  # tail_on="": the fit places its own tail, not the base's [tail]
        profile, name=name, description=description, commands=commands, crypto=crypto, tail_on=""
    )


@dataclass
class _Fit:
    """What the steps of one fit share: the runs, the base profile and a scratch directory."""

    name: str
    base: CardProfile
    runs: list[RunRecord]
    groups: dict[str, _Group]
    flows: dict[str, str]
    source: dict[str, str]
    """Phase → the mode whose runs fit it (sign phases from sign_only when there is one)."""
    workdir: Path
    seed: int
    notes: list[str] = field(default_factory=list)

    def write(self, profile: CardProfile, stem: str, **kw: Any) -> str:
        """Draft ``profile`` as TOML in the scratch directory; its path, for the emulator."""
        path = self.workdir / f"{stem}.toml"
        path.write_text(profile_toml(profile, **kw), encoding="utf-8")
        return str(path)

    def phase_trials(
        self, profile_path: str, mode: str, trials: int, seed: int
    ) -> tuple[list[dict[str, float]], dict[str, list[str]]]:
        """:func:`modelled_phase_trials` with the hash side, data and flow of ``mode``'s runs."""
        group = self.groups[mode]
        return modelled_phase_trials(
            profile_path,
            mode,
            trials=trials,
            seed=seed,
            hash_on=group.hash_on,
            data=group.data,
            spec_extra=self.flows[mode],
        )


def _checked_runs(store: ResultsStore, run_ids: list[int], allow_emulated: bool) -> list[RunRecord]:
    """The runs, each fit to be fitted, all of one card."""
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
    return runs


def _phase_sources(groups: dict[str, _Group]) -> dict[str, str]:
    """Which mode fits which phase: sign phases from sign_only when there is one."""
    source = {phase: "total" for phase in MODE_PHASES["total"]} if "total" in groups else {}
    if "sign_only" in groups:
        source.update({phase: "sign_only" for phase in MODE_PHASES["sign_only"]})
    return source


def _phase_parts(fit: _Fit, base_path: str) -> dict[str, Counter[str]]:
    """Step 1: the components each phase's card time splits over (the run's flow, on base)."""
    parts: dict[str, Counter[str]] = {}
    for phase, mode in fit.source.items():
        _, commands = fit.phase_trials(base_path, mode, trials=1, seed=fit.seed)
        parts[phase] = _components(phase, commands[phase])
    return parts


def _fixed_costs(fit: _Fit, zero_path: str) -> dict[str, tuple[float, float]]:
    """Step 2: mean and variance per phase of what the kept parts cost (fitted parts at 0)."""
    fixed: dict[str, tuple[float, float]] = {}
    for mode in set(fit.source.values()):
        trials, _ = fit.phase_trials(
            zero_path, mode, trials=max(200, fit.groups[mode].n), seed=fit.seed + 1
        )
        for phase in MODE_PHASES[mode]:
            if fit.source.get(phase) == mode:
                values = np.asarray([t[phase] for t in trials])
                fixed[phase] = (float(values.mean()), float(values.var(ddof=1)))
    return fixed


def _card_moments(
    fit: _Fit, phase: str, values: np.ndarray, fixed: tuple[float, float]
) -> PhaseMoments:
    """Step 4a: card time = run − kept parts, mean and variance floored at 0 (with a note)."""
    run_mean, run_var = float(values.mean()), float(values.var(ddof=1))
    fixed_mean, fixed_var = fixed
    card_mean, card_var = run_mean - fixed_mean, run_var - fixed_var
    if card_mean <= 0:
        fit.notes.append(prose.slow_link_note(phase, fixed_mean, run_mean))
        card_mean = 0.0
    if card_var < 0:
        fit.notes.append(prose.steady_run_note(phase, run_var, fixed_var))
        card_var = 0.0
    return PhaseMoments(run_mean, run_var, fixed_mean, fixed_var, card_mean, card_var, len(values))


def _split_weights(
    base: CardProfile, counts: Counter[str], factor: float
) -> tuple[dict[str, float], dict[str, float], str]:
    """Step 4b: each component's share of the mean and of the variance, and the slowest one."""
    base_dists = {c: _base_dist(base, c) for c in counts}
    scale = {c: factor if c == CRYPTO else 1.0 for c in counts}
    weight = {c: counts[c] * base_dists[c].mean_ms * scale[c] for c in counts}
    var_weight = {c: counts[c] * (body_sd(base_dists[c]) * scale[c]) ** 2 for c in counts}
    slowest = max(counts, key=lambda c: weight[c])
    if sum(weight.values()) <= 0:
        weight = {c: float(c == slowest) for c in counts}
    if sum(var_weight.values()) <= 0:
        var_weight = {c: float(c == slowest) for c in counts}
    mean_total, var_total = sum(weight.values()), sum(var_weight.values())
    shares = {c: weight[c] / mean_total for c in counts}
    var_shares = {c: var_weight[c] / var_total for c in counts}
    return shares, var_shares, slowest


def _fit_phase(
    fit: _Fit,
    phase: str,
    counts: Counter[str],
    fixed: tuple[float, float],
    split: tuple[np.ndarray, dict[str, Tail]],
) -> dict[str, tuple[Dist, str]]:
    """Steps 3 + 4 for one phase: a normal per component (the tail on the slowest), and why."""
    mode = fit.source[phase]
    group = fit.groups[mode]
    body, tails = split
    moments = _card_moments(fit, phase, np.asarray(group.phases[phase])[body], fixed)
    curve = _curve(group)
    factor = fit.base.curve_factor.get(curve, 1.0)
    shares, var_shares, slowest = _split_weights(fit.base, counts, factor)
    tail = tails.get(phase)
    fitted: dict[str, tuple[Dist, str]] = {}
    for c in counts:
        scale = factor if c == CRYPTO else 1.0
        mean = shares[c] * moments.card_mean / counts[c] / scale
        sigma = math.sqrt(var_shares[c] * moments.card_var / counts[c]) / scale
        dist = Dist("normal", {"mean_ms": mean, "sigma_ms": sigma})
        text = prose.component_note(
            phase,
            mode,
            _ids(group),
            moments,
            component=c.split(".", 1)[1],
            share=shares[c],
            var_share=var_shares[c],
            apdus=counts[c],
            curve_factor=(factor, curve) if scale != 1 else None,
        )
        if tail is not None and c == slowest:
            tail_dist = Dist(tail.dist.kind, {k: v / scale for k, v in tail.dist.params.items()})
            dist = dataclasses.replace(dist, tail_p=tail.p, tail=tail_dist)
            text += "\n" + prose.tail_note(phase, tail, group.n)
        fitted[c] = (dist, text)
    return fitted


def _fit_phases(fit: _Fit) -> tuple[dict[str, Dist], dict[str, str]]:
    """Steps 1-4: the fitted distribution of every component, and its derivation text."""
    base_path = fit.write(fit.base, "base")
    parts = _phase_parts(fit, base_path)
    zeroed = {c: Dist("constant", {"ms": 0.0}) for cs in parts.values() for c in cs}
    fixed = _fixed_costs(fit, fit.write(_with(fit.base, zeroed, "fit-zero", ""), "zero"))
    splits = {mode: split_tail(group.totals, group.phases) for mode, group in fit.groups.items()}
    for mode, (_, tails) in splits.items():
        for phase, tail in tails.items():
            if fit.source.get(phase) != mode:
                fit.notes.append(prose.unmodelled_tail_note(tail, mode, phase, fit.source))
    fitted: dict[str, Dist] = {}
    derivation: dict[str, str] = {}
    for phase, mode in fit.source.items():
        if not parts[phase]:
            fit.notes.append(f"{phase}: the flow sends no card command in it; not fitted")
            continue
        for c, (dist, text) in _fit_phase(
            fit, phase, parts[phase], fixed[phase], splits[mode]
        ).items():
            fitted[c], derivation[c] = dist, text
    return fitted, derivation


def _compare(fit: _Fit, draft_path: str, model_trials: int) -> dict[str, ModeComparison]:
    """Each mode's recorded statistics next to what the drafted profile models for it."""
    comparisons = {}
    for mode, group in fit.groups.items():
        model = modelled_trials(
            draft_path,
            mode,
            trials=model_trials,
            seed=fit.seed + 2,
            hash_on=group.hash_on,
            spec_extra=fit.flows[mode],
            data=group.data,
        )
        comparisons[mode] = ModeComparison(
            mode, group.ids, ModeStats.of(group.totals), ModeStats.of(model)
        )
    return comparisons


def _reload(fit: _Fit, text: str) -> CardProfile:
    """The final TOML read back by the profile loader, so a saved fit is known to load."""
    final = fit.workdir / f"{fit.name}.toml"
    final.write_text(text, encoding="utf-8")
    return dataclasses.replace(load_profile(final), source=f"(fitted: {fit.name})")


def _check_name(name: str) -> None:
    if not name or any(c in name for c in '/;\\"\n') or name.startswith("."):
        raise FitError(f"profile name {name!r} is not usable", "use letters, digits and -")


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
    _check_name(name)
    base = load_profile(base_profile)
    runs = _checked_runs(store, run_ids, allow_emulated)
    raw_quirks: dict[str, str] = {}
    flows = {run.mode: _flow(run, raw_quirks) for run in runs}
    base = base.with_quirks(**_typed_quirks(raw_quirks)) if raw_quirks else base
    groups = {
        mode: _read_group(store, [r for r in runs if r.mode == mode])
        for mode in MODE_PHASES
        if any(r.mode == mode for r in runs)
    }
    with tempfile.TemporaryDirectory(prefix="safelab-fit-") as tmp:
        fit = _Fit(
            name,
            base,
            runs,
            groups,
            flows,
            _phase_sources(groups),
            Path(tmp),
            seed,
            notes=prose.run_notes(runs),
        )
        fitted, derivation = _fit_phases(fit)
        group_runs = [run for group in groups.values() for run in group.runs]
        description = prose.description([run.id for run in group_runs], runs[0], base)
        result_profile = _with(base, fitted, name, description)
        header = prose.header(name, base, group_runs, fit.source)
        draft_path = fit.write(result_profile, "draft", header=header, notes=derivation)
        comparisons = _compare(fit, draft_path, model_trials)
        header += "\n\n" + prose.comparison_text(comparisons, model_trials, seed + 2)
        if fit.notes:
            header += "\n\nNotes:\n" + "\n".join(f"- {note}" for note in fit.notes)
        text = profile_toml(result_profile, header=header, notes=derivation)
        profile = _reload(fit, text)
    return FitResult(
        name=name,
        toml=text,
        profile=profile,
        run_ids=tuple(run.id for run in runs),
        base_profile=base.name,
        comparisons=comparisons,
        notes=tuple(fit.notes),
    )


def _curve(group: _Group) -> str:
    curve = str(group.runs[0].extra.get("curve", "secp256r1"))
    return CURVE_ALIASES.get(curve.lower(), curve)


def _ids(group: _Group) -> str:
    return ", ".join(str(i) for i in group.ids)
