"""Serve-side APDU profiling: every APDU ``card serve`` receives, timed and decoded, by phase.

SAFE Lab's own client traces its APDUs, but a vendor's PKCS#11 library or a modem's AT
firmware does not. The served card sees every APDU whoever sends it, so it records each one:
when it arrived, the card time and link time the profile modelled for it (both scaled by the
speed; the emulator realises them inside its answer), how long the answer took in all, and
the host's own time since the previous answer on that link (what the host stack spends
between APDUs). Each APDU gets the phase of the paper's Table 1 it belongs to, from what it is
(SELECT opens, VERIFY logs in, GET DATA/READ FILE find, COMPUTE SIGNATURE INIT/UPDATE sign;
GET RESPONSE belongs to the APDU it completes). So a user sees, for example, that a provider
re-SELECTs before every signature and so pays SELECT's cost (and tail) in its sign_only.

Records go to ``<data dir>/cards/NAME.trace.jsonl`` (one JSON object per line, the current or
last serve session of card NAME) from a writer thread, so recording costs the APDU path only
a queue put. PIN bytes (VERIFY data) and response bytes (an ECDH secret, say) are never recorded.
``safelab card trace`` reads it.
"""

from __future__ import annotations

import datetime
import json
import queue
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drivers.cards.apdu import Ins, describe_command, describe_response

PHASES = ("open", "login", "find", "sign_init", "sign", "close", "other")


@dataclass(frozen=True)
class ServedApdu:
    """One APDU the served card answered."""

    seq: int
    at: float
    """Arrival, wall clock (Unix seconds): what ``--since`` compares."""
    offset_ms: float
    """Arrival since the card was served (monotonic clock)."""
    link: str
    """``pcsc`` or ``modem``."""
    channel: int
    phase: str
    name: str
    detail: str
    response_detail: str
    command: str
    """Command APDU in hex; VERIFY's PIN bytes replaced by ``**``."""
    response_bytes: int
    sw: str
    card_ms: float
    """Card time the profile modelled for this APDU (times the speed)."""
    link_ms: float
    """Link time the profile modelled for this APDU (times the speed)."""
    answer_ms: float
    """Measured from arrival to the response being ready (card + link time realised)."""
    host_gap_ms: float | None
    """Host time since the previous answer on this link (None for the first APDU)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def trace_path(card: str) -> Path:
    from drivers.cards.emulator.persist import card_path

    path = card_path(card)
    return path.with_name(path.stem + ".trace.jsonl")


class PhaseTracker:
    """The phase of each APDU, remembering per channel what a GET RESPONSE completes."""

    def __init__(self) -> None:
        self._last: dict[int, str] = {}

    def phase(self, raw: bytes) -> str:
        if len(raw) < 4:
            return "other"
        cla, ins, p1 = raw[0], raw[1], raw[2]
        channel = _channel(cla)
        if ins == Ins.GET_RESPONSE:
            return self._last.get(channel, "other")
        if ins == Ins.MANAGE_CHANNEL:
            phase = "open" if p1 == 0x00 else "close"
        elif ins == Ins.SELECT:
            phase = "open"
        elif ins == Ins.VERIFY_PIN:
            phase = "login"
        elif ins == Ins.GET_DATA:
            phase = "open" if p1 == 0x00 else "find"
        elif ins in (Ins.READ_FILE, Ins.READ_PUBLIC_KEY):
            phase = "find"
        elif ins == Ins.COMPUTE_SIGNATURE_INIT:
            phase = "sign_init" if p1 == 0x00 else "close"
        elif ins == Ins.COMPUTE_SIGNATURE_UPDATE:
            phase = "sign"
        else:
            phase = "other"
        self._last[channel] = phase
        return phase


def _channel(cla: int) -> int:
    if cla & 0x40:  # further interindustry class: channels 4-19
        return 4 + (cla & 0x0F)
    return cla & 0x03


def _shown_command(raw: bytes) -> str:
    if len(raw) > 5 and raw[1] == Ins.VERIFY_PIN:
        return raw[:5].hex().upper() + "**"
    return raw.hex().upper()


class ApduRecorder:
    """Records the served card's APDUs to the trace file from a writer thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.write_text("", encoding="utf-8")  # a new serve session starts the trace
        self.start_ns = time.perf_counter_ns()
        self._seq = 0
        self._phases = PhaseTracker()
        self._last_answer: dict[str, int] = {}
        self._queue: queue.SimpleQueue[ServedApdu | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="apdu-trace", daemon=True)
        self._writer.start()
        self.count = 0

    def record(
        self,
        link: str,
        command: bytes,
        response: bytes,
        *,
        arrived_ns: int,
        arrived_at: float,
        answered_ns: int,
        card_ms: float,
        link_ms: float,
    ) -> None:
        """One APDU (called under the card's lock, so calls are ordered)."""
        self._seq += 1
        previous = self._last_answer.get(link)
        self._last_answer[link] = answered_ns
        name, detail = describe_command(command)
        entry = ServedApdu(
            seq=self._seq,
            at=arrived_at,
            offset_ms=round((arrived_ns - self.start_ns) / 1e6, 3),
            link=link,
            channel=_channel(command[0]) if command else 0,
            phase=self._phases.phase(command),
            name=name,
            detail=detail,
            response_detail=describe_response(command, response),  # sizes, never secrets
            command=_shown_command(command),
            response_bytes=max(0, len(response) - 2),
            sw=response[-2:].hex().upper(),
            card_ms=round(card_ms, 3),
            link_ms=round(link_ms, 3),
            answer_ms=round((answered_ns - arrived_ns) / 1e6, 3),
            host_gap_ms=None if previous is None else round((arrived_ns - previous) / 1e6, 3),
        )
        self.count += 1
        self._queue.put(entry)

    def _write(self) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            while True:
                entry = self._queue.get()
                if entry is None:
                    return
                out.write(json.dumps(entry.as_dict()) + "\n")
                if self._queue.empty():
                    out.flush()

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=5)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a duration back from now (``30s``, ``5m``, ``2h``, ``500ms``) or an ISO time.

    Returns Unix seconds; a bad value raises ``ValueError`` with what is accepted.
    """
    now = time.time() if now is None else now
    match = _DURATION.match(text.strip())
    if match:
        value = float(match.group(1))
        unit = match.group(2) or "s"
        return now - value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a duration (30s, 5m, 2h) nor an ISO time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def read_trace(path: Path, since: float | None = None) -> list[ServedApdu]:
    """The recorded APDUs (arrived at or after ``since``, Unix seconds), oldest first."""
    entries = []
    with path.open(encoding="utf-8") as source:
        for line in source:
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
                entry = ServedApdu(**data)
            except (ValueError, TypeError):
                continue  # a line being written as we read
            if since is None or entry.at >= since:
                entries.append(entry)
    return entries


@dataclass(frozen=True)
class PhaseSummary:
    phase: str
    apdus: int
    card_ms: float
    link_ms: float
    answer_ms: float


def by_phase(entries: Iterable[ServedApdu]) -> list[PhaseSummary]:
    """APDU count and summed times per phase, in the phases' order."""
    sums: dict[str, list[float]] = {}
    for entry in entries:
        row = sums.setdefault(entry.phase, [0, 0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += entry.card_ms
        row[2] += entry.link_ms
        row[3] += entry.answer_ms
    return [
        PhaseSummary(
            phase,
            int(sums[phase][0]),
            round(sums[phase][1], 3),
            round(sums[phase][2], 3),
            round(sums[phase][3], 3),
        )
        for phase in PHASES
        if phase in sums
    ]
