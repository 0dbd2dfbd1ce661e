"""Triage of an IoT SAFE card for a field engineer: is it there, is it right, is it fast?

:func:`run_triage` yields one :class:`Check` at a time as each completes, so the console can
show them live and the CLI can print them as they come. The checks, in order:

1. ``link``: the readers (PC/SC) or the modem (ATI), or the in-process emulator;
2. ``atr``: the card's Answer-To-Reset decoded (PC/SC only: a modem does not pass it on);
3. ``applet``: SELECT of the IoT SAFE AID, and GET DATA application info (applet id, version);
4. ``objects``: the object list: keys with type, usage and state; files;
5. ``certificates``: each certificate file with subject, issuer, validity, curve, and whether
   it matches a key on the card;
6. ``signature``: a test signature by the card, verified on the host against the
   certificate's public key (or the key's public object when there is no certificate);
7. ``latency``: a few sign_only and total trials (not stored), summarised.

Verdicts: PASS, WARN (works, but look), FAIL (broken), SKIP (not applicable on this link). A
check that cannot run because an earlier one failed is SKIP with the reason. The overall
verdict is the worst one; the CLI's exit code follows it (0 PASS, 1 WARN, 2 FAIL).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.cards.apdu import ObjectEntry
from drivers.cards.atr import decode_atr
from drivers.cards.iotsafe_token import IoTSafeToken, parse_options
from drivers.errors import SafeLabError
from drivers.tokens.base import HashOn, Pin, Token
from drivers.tokens.registry import open_token

VERDICTS = ("PASS", "SKIP", "WARN", "FAIL")
"""From best to worst; SKIP does not make the overall verdict worse than PASS."""

TEST_DATA = b"SAFE Lab triage test signature"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    duration_ms: float | None = None
    """How long this check took (monotonic clock), from the previous check's end."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "detail": self.detail,
            "duration_ms": self.duration_ms,
            "data": self.data,
        }


@dataclass(frozen=True)
class TriageReport:
    """The whole triage: every check, the overall verdict, and the time it took to reach it."""

    target: str
    checks: tuple[Check, ...]
    elapsed_ms: float

    @property
    def verdict(self) -> str:
        return overall(list(self.checks))

    def summary(self) -> str:
        """The one overall verdict line: ``PASS in 0.81 s (7 checks: 6 PASS, 1 SKIP)``."""
        counts = {v: sum(c.verdict == v for c in self.checks) for v in VERDICTS}
        shown = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        return (
            f"{self.verdict} in {self.elapsed_ms / 1000:.2f} s ({len(self.checks)} checks: {shown})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "token": self.target,
            "verdict": self.verdict,
            "elapsed_ms": self.elapsed_ms,
            "summary": self.summary(),
            "checks": [c.as_dict() for c in self.checks],
        }


def timed(checks: Iterator[Check]) -> Iterator[Check]:
    """Each check with its own duration: the time from the previous yield to this one.

    Checks run when the generator is advanced and are yielded as soon as they complete, so the
    gap between yields is the check's own time (the consumer's printing is excluded).
    """
    while True:
        start = time.perf_counter_ns()
        try:
            check = next(checks)
        except StopIteration:
            return
        took = (time.perf_counter_ns() - start) / 1e6
        yield dataclasses.replace(check, duration_ms=round(took, 3))


def overall(checks: list[Check]) -> str:
    worst = max((VERDICTS.index(c.verdict) for c in checks), default=0)
    return "PASS" if VERDICTS[worst] == "SKIP" else VERDICTS[worst]


def exit_code(verdict: str) -> int:
    return {"PASS": 0, "WARN": 1, "FAIL": 2}.get(verdict, 2)


def run_triage(
    target: str | Token,
    *,
    sign_only_trials: int = 10,
    total_trials: int = 3,
    threshold_ms: float = 1000.0,
    pin: Pin | None = None,
) -> Iterator[Check]:
    """Triage the IoT SAFE card named by ``target``: an ``iotsafe:`` spec, or an open token.

    A token passed in stays open (its owner closes it); one opened from a spec is closed here.
    ``pin`` is used once per session for a card whose spec says ``login=verify``; a refusal
    fails the signature check and is never retried.
    """
    if isinstance(target, Token):
        if not isinstance(target, IoTSafeToken):
            yield Check(
                "link",
                "FAIL",
                f"{target.info.label!r} is a {target.info.kind} token, not an IoT SAFE "
                "card: triage checks SIM applets",
            )
            return
        yield from _token_link_check(target)
        yield from _card_checks(target, sign_only_trials, total_trials, threshold_ms, pin)
        return
    try:
        options = parse_options(target)
    except SafeLabError as exc:
        yield Check("link", "FAIL", exc.one_line())
        return
    link = list(_link_checks(options.target, options.port))
    yield from link
    if any(check.verdict == "FAIL" for check in link):
        return
    try:
        token = open_token(target)
    except SafeLabError as exc:
        yield Check("applet", "FAIL", f"cannot reach the card: {exc.one_line()}")
        return
    assert isinstance(token, IoTSafeToken)
    try:
        yield from _card_checks(token, sign_only_trials, total_trials, threshold_ms, pin)
    finally:
        token.close()


def _card_checks(
    token: IoTSafeToken,
    sign_only_trials: int,
    total_trials: int,
    threshold_ms: float,
    pin: Pin | None,
) -> Iterator[Check]:
    yield _atr_check(token)
    applet = _applet_check(token)
    yield applet
    if applet.verdict == "FAIL":
        return
    objects_check, entries = _objects_check(token)
    yield objects_check
    yield _certificates_check(token, entries)
    signature = _signature_check(token, pin)
    yield signature
    if signature.verdict == "FAIL":
        yield Check("latency", "SKIP", "no working signature to time")
        return
    yield _latency_check(token, sign_only_trials, total_trials, threshold_ms, pin)


def _token_link_check(token: IoTSafeToken) -> Iterator[Check]:
    """The link check for a token someone already opened: what its transport is."""
    if token.applet is not None:
        yield from _link_checks("emulated", None)
    elif getattr(token.transport, "atr", None) is not None:
        yield from _link_checks("pcsc", None)
    else:
        yield Check("link", "PASS", f"{token.transport.name}", {"link": token.transport.name})


def _link_checks(target: str, port: str | None) -> Iterator[Check]:
    if target == "emulated":
        yield Check(
            "link",
            "PASS",
            "in-process IoT SAFE emulator (EMULATED: timing from a profile, not hardware)",
            {"link": "emulated"},
        )
        return
    if target == "pcsc":
        from drivers.cards.pcsc import list_readers

        try:
            readers = list_readers()
        except SafeLabError as exc:
            yield Check("link", "FAIL", exc.one_line())
            return
        data = {
            "readers": [
                {"name": r.name, "card": r.card_present, "atr": r.atr.hex().upper()}
                for r in readers
            ]
        }
        shown = "; ".join(
            f"{r.index}: {r.name} ({'card' if r.card_present else 'empty'})" for r in readers
        )
        verdict = "PASS" if any(r.card_present for r in readers) else "FAIL"
        detail = shown or "no PC/SC reader"
        if verdict == "FAIL":
            detail += " — insert the SIM, or start `safelab card serve`"
        yield Check("link", verdict, detail, data)
        return
    yield Check("link", "PASS", f"modem on {port}", {"port": port})


def _atr_check(token: IoTSafeToken) -> Check:
    atr = getattr(token.transport, "atr", b"")
    if not atr:
        return Check("atr", "SKIP", "this link does not pass on the ATR (modem or in-process)")
    summary = decode_atr(atr)
    verdict = "WARN" if summary.checksum_ok is False else "PASS"
    return Check(
        "atr",
        verdict,
        f"{summary.hex}: {summary.describe()}",
        {
            "atr": summary.hex,
            "protocols": list(summary.protocols),
            "historical": summary.historical,
            "emulated": summary.emulated,
        },
    )


def _applet_check(token: IoTSafeToken) -> Check:
    client = token.client()
    with token.device_lock:
        try:
            client.open()
            info = client.application_info()
        except SafeLabError as exc:
            return Check("applet", "FAIL", exc.one_line(), {"aid": token.aid.hex().upper()})
        finally:
            client.close()
            token._learn(client)
    version = info.version.hex(".").upper() if info.version else "not given"
    detail = (
        f"IoT SAFE applet {token.aid.hex().upper()} selected: "
        f"{info.applet_id or 'no applet id'}, version {version}, "
        f"up to {info.max_sessions} sessions"
    )
    return Check(
        "applet",
        "PASS",
        detail,
        {
            "aid": token.aid.hex().upper(),
            "applet_id": info.applet_id,
            "version": version,
            "max_sessions": info.max_sessions,
            "max_private_keys": info.max_private_keys,
            "max_files": info.max_files,
            "cla": f"{token.cla_class:02X}",
        },
    )


def _describe_entry(entry: ObjectEntry) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "id": entry.id.hex().upper(),
        "label": entry.label,
        "curve": entry.curve,
        "can_sign": entry.can_sign,
        "state": entry.state,
        "key_usage": entry.key_usage,
        "file_size": entry.file_size,
        "file_usage": entry.file_usage,
    }


def _objects_check(token: IoTSafeToken) -> tuple[Check, list[ObjectEntry]]:
    client = token.client()
    with token.device_lock:
        try:
            client.open()
            entries = client.object_list()
        except SafeLabError as exc:
            return Check("objects", "FAIL", exc.one_line()), []
        finally:
            client.close()
    keys = [e for e in entries if e.kind == "private"]
    signing = [e for e in keys if e.can_sign]
    files = [e for e in entries if e.kind == "file"]
    parts = [
        f"{len(keys)} private keys ({len(signing)} can sign)",
        f"{sum(e.kind == 'public' for e in entries)} public keys",
        f"{len(files)} files",
    ]
    named = ", ".join(
        f"{e.id.hex().upper()} {e.label!r} {e.curve}{' sign' if e.can_sign else ''}" for e in keys
    )
    verdict = "PASS" if signing else "FAIL"
    detail = "; ".join(parts) + (f": {named}" if named else "")
    if not signing:
        detail += " — no key can sign: provision one"
    return Check(
        "objects", verdict, detail, {"objects": [_describe_entry(e) for e in entries]}
    ), entries


def _certificates_check(token: IoTSafeToken, entries: list[ObjectEntry]) -> Check:
    cert_files = [e for e in entries if e.kind == "file" and e.file_usage == 0x02]
    if not cert_files:
        return Check(
            "certificates", "WARN", "no certificate file on the card", {"certificates": []}
        )
    publics: dict[str, ec.EllipticCurvePublicKey] = {}
    for key in (e for e in entries if e.kind == "private" and e.can_sign):
        try:
            publics[key.label] = token.public_key(key.id.hex())
        except SafeLabError:
            continue
    client = token.client()
    found: list[dict[str, Any]] = []
    worst = "PASS"
    now = datetime.datetime.now(datetime.UTC)
    with token.device_lock:
        client.open()
        try:
            for file in cert_files:
                record: dict[str, Any] = {"file": file.label, "id": file.id.hex().upper()}
                try:
                    cert = x509.load_der_x509_certificate(
                        client.read_file(file.ref, file.file_size)
                    )
                except (ValueError, SafeLabError) as exc:
                    record["error"] = str(exc)
                    worst = "FAIL"
                    found.append(record)
                    continue
                public = cert.public_key()
                matches = [label for label, key in publics.items() if key == public]
                valid = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
                record.update(
                    {
                        "subject": cert.subject.rfc4514_string(),
                        "issuer": cert.issuer.rfc4514_string(),
                        "not_before": cert.not_valid_before_utc.isoformat(),
                        "not_after": cert.not_valid_after_utc.isoformat(),
                        "curve": public.curve.name
                        if isinstance(public, ec.EllipticCurvePublicKey)
                        else type(public).__name__,
                        "matches_key": matches[0] if matches else None,
                        "valid_now": valid,
                    }
                )
                if not valid:
                    worst = "FAIL" if worst == "FAIL" else "WARN"
                found.append(record)
        finally:
            client.close()
    if found and not any(r.get("matches_key") for r in found):
        worst = "WARN" if worst == "PASS" else worst
    lines = []
    for r in found:
        if "error" in r:
            lines.append(f"{r['file']}: unreadable ({r['error']})")
            continue
        match = f"matches key {r['matches_key']!r}" if r["matches_key"] else "matches no key"
        validity = "valid" if r["valid_now"] else "NOT VALID NOW"
        lines.append(
            f"{r['file']}: {r['subject']} by {r['issuer']}, {r['curve']}, "
            f"until {r['not_after'][:10]} ({validity}), {match}"
        )
    return Check("certificates", worst, "; ".join(lines), {"certificates": found})


def _signature_check(token: IoTSafeToken, pin: Pin | None) -> Check:
    try:
        with token.open() as session:
            session.login(pin)
            key = session.find_key()
            signature = session.sign_init_and_sign(key, HashOn.HOST, TEST_DATA)
    except SafeLabError as exc:
        return Check("signature", "FAIL", f"the card did not sign: {exc.one_line()}")
    cert = None
    try:
        cert = token.certificate()
    except SafeLabError:
        cert = None
    public = cert.public_key() if cert is not None else None
    source = "certificate"
    if not isinstance(public, ec.EllipticCurvePublicKey):
        try:
            public = token.public_key()
            source = "public key object"
        except SafeLabError as exc:
            return Check(
                "signature", "WARN", f"signed, but nothing to verify against: {exc.one_line()}"
            )
    digest = hashlib.sha256(TEST_DATA).digest()
    ok = signature.verify_digest(public, digest)
    data = {"key": key.label, "verified_with": source, "signature": signature.raw.hex().upper()}
    if ok:
        return Check(
            "signature",
            "PASS",
            f"key {key.label!r} signed; the signature verifies with the {source}",
            data,
        )
    return Check(
        "signature",
        "FAIL",
        f"key {key.label!r} signed, but the signature does NOT verify with the "
        f"{source}: key and certificate do not match",
        data,
    )


def _latency_check(
    token: IoTSafeToken, sign_only: int, total: int, threshold_ms: float, pin: Pin | None
) -> Check:
    def sign_only_ms() -> list[float]:
        times = []
        with token.open() as session:
            session.login(pin)
            key = session.find_key()
            for _ in range(sign_only):
                start = time.perf_counter_ns()
                session.sign_init_and_sign(key, HashOn.HOST, TEST_DATA)
                times.append((time.perf_counter_ns() - start) / 1e6)
        return times

    def total_ms() -> list[float]:
        times = []
        for _ in range(total):
            start = time.perf_counter_ns()
            with token.open() as session:
                session.login(pin)
                key = session.find_key()
                session.sign_init_and_sign(key, HashOn.HOST, TEST_DATA)
                times.append((time.perf_counter_ns() - start) / 1e6)
        return times

    try:
        quick, fresh = sign_only_ms(), total_ms()
    except SafeLabError as exc:
        return Check("latency", "FAIL", f"signing failed while timing: {exc.one_line()}")
    over = sum(t > threshold_ms for t in quick + fresh)
    quick_stats = {"n": len(quick), "p50": statistics.median(quick), "max": max(quick)}
    fresh_stats = {"n": len(fresh), "p50": statistics.median(fresh), "max": max(fresh)}
    data = {
        "sign_only_ms": quick_stats,
        "total_ms": fresh_stats,
        "over_threshold": over,
        "threshold_ms": threshold_ms,
        "emulated": token.info.emulated,
    }
    detail = (
        f"sign_only P50 {quick_stats['p50']:.1f} ms (max "
        f"{quick_stats['max']:.1f}, n={len(quick)}); total P50 "
        f"{fresh_stats['p50']:.1f} ms (max {fresh_stats['max']:.1f}, "
        f"n={len(fresh)}); {over} over {threshold_ms:g} ms"
        + (" [EMULATED]" if token.info.emulated else "")
    )
    return Check("latency", "WARN" if over else "PASS", detail, data)
