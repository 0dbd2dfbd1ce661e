"""Token models: how long one signature takes on a token, and how big it is.

Why a parameter and not P-256 built in: the what-if lab must answer "what if the card signed
ML-DSA" before the card can. A :class:`Algorithm` says the signature's size (it travels in
the client's CertificateVerify flight), the public key's size (in the certificate), and the
signing time on the host and on a card; the P-256 entry is measured (software: calibration;
card: the card profile's ``ecdsa_sign``). Another module registers more algorithms with
:func:`register_algorithm` (the PQC work of issue 14 part 3), and every prediction says where
each figure came from.

Token specs, as everywhere in SAFE Lab:

- ``software:p256`` (any ``software:``): the calibrated software signing time (or the
  algorithm's own ``software_sign_ms``);
- ``iotsafe:emulated;profile=NAME;speed=F[;login=verify]`` (or a fitted profile): the card
  profile's modelled time of the real APDU flow (:func:`drivers.cards.emulator.predict.
  modelled_trials`), ``sign_only`` when the token session is kept between handshakes and
  ``total`` when it is fresh, times ``speed``, plus the host's APDU cost (calibration).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from drivers.errors import SafeLabError
from drivers.whatif.calibration import Calibration, Quantiles


@dataclass(frozen=True)
class Algorithm:
    """A signature algorithm as the model needs it."""

    name: str
    signature_bytes: int
    public_key_bytes: int
    software_sign_ms: float | None = None
    """Host signing time; ``None``: the calibrated software key's (P-256 only)."""
    card_sign_ms: float | None = None
    """On-card compute at speed 1; ``None``: the card profile's ``ecdsa_sign``."""
    card_extra_ms: float = 0.0
    """Card-side cost besides compute at speed 1, e.g. chaining a long signature out."""
    source: str = ""
    refused_on_card: str = ""
    """Why a card cannot do it (RAM), said instead of a prediction."""


ALGORITHMS: dict[str, Algorithm] = {
    "p256": Algorithm(
        "p256",
        signature_bytes=72,
        public_key_bytes=65,
        source="ECDSA P-256: DER signature <= 72 B, uncompressed point 65 B (SEC 1); times "
        "measured (software: calibration; card: its profile)",
    ),
}
"""Known algorithms by name; :func:`register_algorithm` adds to it."""


def register_algorithm(algorithm: Algorithm) -> None:
    """Make ``algorithm`` usable as ``--alg NAME`` (replaces one of the same name)."""
    ALGORITHMS[algorithm.name] = algorithm


def algorithm(name: str) -> Algorithm:
    key = {"ecdsa-p256": "p256", "secp256r1": "p256", "es256": "p256"}.get(name.lower(), name)
    try:
        return ALGORITHMS[key.lower()]
    except KeyError:
        raise SafeLabError(
            f"unknown signature algorithm {name!r}", f"use one of {', '.join(ALGORITHMS)}"
        ) from None


@dataclass(frozen=True)
class TokenModel:
    """One signature's time (ms, sampled) on one token, with its provenance."""

    label: str
    kind: str
    """``software`` or ``card``."""
    sampler: Callable[[random.Random], float] = field(compare=False)
    mean_ms: float
    algorithm: Algorithm
    provenance: str
    speed: float = 1.0

    def sample(self, rng: random.Random) -> float:
        return self.sampler(rng)


def _software(spec: str, alg: Algorithm, calibration: Calibration, protocol: str) -> TokenModel:
    if alg.software_sign_ms is not None:
        value = alg.software_sign_ms
        return TokenModel(
            f"software {alg.name}",
            "software",
            lambda rng: value,
            value,
            alg,
            f"{alg.name} software signing {value:g} ms ({alg.source})",
        )
    if alg.name != "p256":
        raise SafeLabError(
            f"no software signing time for {alg.name}", "register it with its measured time"
        )
    quantiles: Quantiles = calibration.protocol(protocol).software_sign
    return TokenModel(
        f"software {alg.name}",
        "software",
        quantiles.sample,
        quantiles.median,
        alg,
        f"software P-256 signing measured in calibration ({calibration.source}, "
        f"median {quantiles.median:.3f} ms, n={quantiles.n})",
    )


CARD_TRIALS = 500
"""Modelled card trials per profile and mode (cached): a ``total`` trial runs the whole APDU
flow of a session, so 500 keep the first prediction to a few seconds; the 4 % heavy tail of
the paper SIM still has ~20 trials in it."""


@lru_cache(maxsize=32)
def _card_trials(profile: str, mode: str, spec_extra: str, trials: int) -> tuple[float, ...]:
    from drivers.cards.emulator.predict import modelled_trials

    return tuple(modelled_trials(profile, mode, trials=trials, seed=11, spec_extra=spec_extra))


def _card(
    spec: str,
    alg: Algorithm,
    calibration: Calibration,
    *,
    session: str,
    speed: float | None,
) -> TokenModel:
    from drivers.cards.emulator.profile import load_profile
    from drivers.cards.iotsafe_token import parse_options

    options = parse_options(spec)
    if options.target != "emulated" and "profile=" not in spec:
        raise SafeLabError(
            f"no model for the card behind {spec!r}",
            "fit one (safelab card fit) and give its profile=NAME in the spec",
        )
    if alg.refused_on_card:
        raise SafeLabError(
            f"{alg.name} cannot run on the card: {alg.refused_on_card}", "pick another --alg"
        )
    factor = options.speed if speed is None else speed
    mode = "sign_only" if session == "kept" else "total"
    extra = ";login=verify" if options.login else ""
    trials = _card_trials(options.profile, mode, extra, CARD_TRIALS)
    profile = load_profile(options.profile)
    ecdsa = profile.crypto.get("ecdsa_sign")
    shift = 0.0
    if alg.card_sign_ms is not None:
        shift = alg.card_sign_ms - (ecdsa.mean_ms if ecdsa is not None else 0.0)
    shift += alg.card_extra_ms
    host = calibration.card_host_ms
    quantiles = Quantiles.of([max(0.0, t + shift) for t in trials])

    def sample(rng: random.Random) -> float:
        return quantiles.sample(rng) * factor + host

    mean = sum(trials) / len(trials)
    return TokenModel(
        f"card {profile.name} ({mode}, speed {factor:g})",
        "card",
        sample,
        (mean + shift) * factor + host,
        alg,
        f"card profile {profile.source}: modelled {mode} trials ({CARD_TRIALS}, the real APDU flow"
        f"{', login=verify' if extra else ''}) x speed {factor:g}"
        + (f", {alg.name} on-card {alg.card_sign_ms} ms ({alg.source})" if shift else "")
        + f", + host APDU cost {host:.3f} ms (calibration)",
        factor,
    )


def token_model(
    spec: str,
    calibration: Calibration,
    *,
    protocol: str = "mqtt",
    alg: str | Algorithm = "p256",
    session: str = "kept",
    speed: float | None = None,
) -> TokenModel:
    """The model of token ``spec`` signing with ``alg``; ``speed`` overrides a card's."""
    chosen = alg if isinstance(alg, Algorithm) else algorithm(alg)
    if session not in ("kept", "fresh"):
        raise SafeLabError(f"token session {session!r}", "use kept or fresh")
    if spec.startswith("software:"):
        return _software(spec, chosen, calibration, protocol)
    if spec.startswith("iotsafe:"):
        return _card(spec, chosen, calibration, session=session, speed=speed)
    raise SafeLabError(
        f"no what-if model for token {spec!r}",
        "use software:p256 or an iotsafe: card spec (emulated or with a fitted profile=)",
    )
