"""What a card profile predicts for the paper's measurement modes, without waiting.

Runs the real token flow (the same APDUs as a measured run) against an emulated applet whose
delays are only recorded (:class:`RecordingDelay`), and returns the modelled milliseconds per
trial. Profiles are fitted and checked with it (``tests/cards/test_profiles.py``), and a
what-if view can show a profile's expected distribution before anyone waits for it.

Modes as in the paper's Table 2: ``sign_only`` = sign_init + sign on a reused session and
key; ``total`` = open + login + find + sign_init + sign, all fresh every trial.
"""

from __future__ import annotations

from drivers.cards.emulator.delay import RecordingDelay
from drivers.cards.emulator.store import LAB_PIN
from drivers.tokens.base import HashOn, Pin

PAPER_DATA = b"12345678901234567890123456789012"
"""The paper's fixed 32-byte message."""


def modelled_trials(
    profile: str,
    mode: str = "total",
    *,
    trials: int = 100,
    seed: int = 0,
    hash_on: HashOn = HashOn.HOST,
    spec_extra: str = "",
    data: bytes = PAPER_DATA,
) -> list[float]:
    """Modelled ms of ``trials`` trials of ``mode`` (``sign_only`` or ``total``).

    ``spec_extra`` adds token-spec attributes (``;find=info``, ``;quirk-t0=false``,
    ``;login=verify`` for the paper's C_Login with the lab card's PIN).
    """
    from drivers.cards.iotsafe_token import emulated_token, parse_options

    if mode not in ("sign_only", "total"):
        raise ValueError(f"mode {mode!r} is not sign_only or total")
    options = parse_options(
        f"iotsafe:emulated;profile={profile};speed=1;seed={seed};card=predict{spec_extra}"
    )
    delay = RecordingDelay()
    token = emulated_token(options, delay=delay)
    pin = Pin(LAB_PIN) if options.login else None  # ;login=verify: the paper's C_Login
    results: list[float] = []
    try:
        if mode == "sign_only":
            session = token.open()
            session.login(pin)
            key = session.find_key()
            for _ in range(trials):
                before = delay.total_ns
                session.sign_init(key, hash_on)
                session.sign(data)
                results.append((delay.total_ns - before) / 1e6)
            session.close()
        else:
            for _ in range(trials):
                before = delay.total_ns
                session = token.open()
                session.login(pin)
                key = session.find_key()
                session.sign_init(key, hash_on)
                session.sign(data)
                results.append((delay.total_ns - before) / 1e6)
                session.close()
    finally:
        token.close()
    return results
