"""Frozen copies of a live SSDTF trace: the rows an SSDTF run's snapshots carry.

The trace's records are written by the tap's and the roles' threads while a front end reads,
so no front end keeps a :class:`~drivers.ssdtf.trace.PacketRecord`: the run copies each one
into a :class:`PacketRow` (frozen, compared by value, so a screen redraws only changed rows)
and posts them. Here, in the driver layer, because the run service copies them; the text
rendering of rows stays in :mod:`screens.widgets.packets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.ssdtf.trace import PacketRecord, Trace

HEX_LIMIT = 512
"""Bytes of a packet kept in a row's hex dump; the trace export keeps them all."""


@dataclass(frozen=True)
class VerdictView:
    """One role's decision about a packet, copied out of the trace."""

    role: str
    ok: bool
    reason: str
    stage: str


@dataclass(frozen=True)
class PacketRow:
    """One captured packet as a front end shows it (a copy: safe to keep anywhere)."""

    index: int
    t_ms: float
    lane: str
    direction: str
    arrow: str
    mqtt_type: str
    topic: str
    qos: int
    dup: bool
    retain: bool
    packet_id: int | None
    size: int
    ssdtf: tuple[tuple[str, str], ...]
    ssdtf_type: str
    ssdtf_error: str
    status: str
    note: str
    verdicts: tuple[VerdictView, ...]
    hexdump: str
    raw: bytes = b""
    """The packet's first :data:`HEX_LIMIT` bytes, so a front end can lay its dump out for
    its own width (``hexdump`` is the 16-bytes-a-line one of the export)."""

    @property
    def rejected(self) -> bool:
        return any(not v.ok for v in self.verdicts)


def _field_text(value: Any) -> str:
    if isinstance(value, dict) and "len" in value:
        return f"{value['len']} B, starts {value.get('head', '')}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def row_of(record: PacketRecord) -> PacketRow:
    """Copy a trace record (its verdict list may still grow; the copy will not)."""
    fields = dict(record.ssdtf or {})
    ssdtf_type = str(fields.pop("type", "")) if record.ssdtf is not None else ""
    raw = bytes(record.raw)
    dump = record.hexdump() if len(raw) <= HEX_LIMIT else _short_dump(record)
    return PacketRow(
        index=record.index,
        t_ms=record.t_ms,
        lane=record.lane,
        direction=record.direction,
        arrow=record.arrow,
        mqtt_type=record.mqtt_type,
        topic=record.topic or "",
        qos=record.qos,
        dup=record.dup,
        retain=record.retain,
        packet_id=record.packet_id,
        size=len(raw),
        ssdtf=tuple((k, _field_text(v)) for k, v in fields.items()),
        ssdtf_type=ssdtf_type,
        ssdtf_error=record.ssdtf_error or "",
        status=record.status,
        note=record.note,
        verdicts=tuple(VerdictView(v.role, v.ok, v.reason, v.stage) for v in list(record.verdicts)),
        hexdump=dump,
        raw=raw[:HEX_LIMIT],
    )


def _short_dump(record: PacketRecord) -> str:
    lines = record.hexdump().splitlines()
    keep = HEX_LIMIT // 16
    return "\n".join([*lines[:keep], f"… {len(record.raw) - HEX_LIMIT} more bytes in the export"])


class RowCopier:
    """Copies a trace into rows again and again; unchanged records reuse their last copy.

    A record is re-copied when its status (held → forwarded) or its verdict count changed,
    so a busy trace costs one pass over the list, not one hex dump per packet per copy.
    """

    def __init__(self) -> None:
        self._cache: dict[int, tuple[str, int, PacketRow]] = {}

    def __call__(self, trace: Trace) -> tuple[PacketRow, ...]:
        rows: list[PacketRow] = []
        for record in trace.snapshot():
            key = (record.status, len(record.verdicts))
            cached = self._cache.get(record.index)
            if cached is None or cached[:2] != key:
                cached = (*key, row_of(record))
                self._cache[record.index] = cached
            rows.append(cached[2])
        return tuple(rows)
