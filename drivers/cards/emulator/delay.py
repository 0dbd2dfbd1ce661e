"""Realising the emulated card's delays precisely, and nothing more.

The emulator decides how long an APDU takes (from its profile) and then waits until that much
time has passed *since the APDU arrived*, so its own Python work (ECDSA, TLV parsing) is part
of the modelled time instead of being added on top. ``time.sleep`` alone overshoots by tens
to hundreds of microseconds (timer slack, scheduling), so :class:`PreciseDelay` sleeps until
shortly before the deadline and spins on :func:`time.perf_counter_ns` for the rest.

:class:`RecordingDelay` waits not at all and only adds the delays up: tests and profile fitting
use it to read the modelled times without any wall-clock dependence.
"""

from __future__ import annotations

import time
from typing import Protocol


class Delay(Protocol):
    """How the applet spends the time an APDU is modelled to take."""

    def wait(self, start_ns: int, delay_ns: int) -> None:
        """Return no earlier than ``start_ns + delay_ns`` (perf_counter_ns clock)."""
        ...


class PreciseDelay:
    """Sleep to within ``spin_ns`` of the deadline, then spin: sub-10 µs overshoot typical."""

    def __init__(self, spin_ns: int = 1_000_000) -> None:
        self.spin_ns = spin_ns

    def wait(self, start_ns: int, delay_ns: int) -> None:
        if delay_ns <= 0:
            return
        deadline = start_ns + delay_ns
        while True:
            remaining = deadline - time.perf_counter_ns()
            if remaining <= 0:
                return
            if remaining > self.spin_ns:
                time.sleep((remaining - self.spin_ns) / 1e9)


class RecordingDelay:
    """No waiting; keeps the total and the list of requested delays (for tests and fitting)."""

    def __init__(self) -> None:
        self.total_ns = 0
        self.delays_ns: list[int] = []

    def wait(self, start_ns: int, delay_ns: int) -> None:
        del start_ns
        self.total_ns += max(0, delay_ns)
        self.delays_ns.append(max(0, delay_ns))
