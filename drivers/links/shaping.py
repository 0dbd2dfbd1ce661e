"""The common core of both modes: when a packet leaves a direction, and a loop that runs it.

Why our own timing instead of bare ``loop.call_at``: asyncio's selector rounds its timeout up
to whole milliseconds, so a timer fires up to ~1 ms late, which alone would break the ±1 ms
accuracy goal at small delays. A :class:`Pipe` arms its timer :data:`EARLY` seconds before the
head packet is due and then sleeps the remainder with ``time.sleep`` (``clock_nanosleep``,
tens of microseconds of overshoot). The sleep blocks the loop for at most :data:`EARLY`.

Why FIFO: packets are never reordered, even with jitter: a cellular bearer delivers in order
(RLC acknowledged mode), TCP over a reordering link would show spurious fast retransmits the
real networks we model do not have, and the TCP proxy must keep a byte stream in order anyway.
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from drivers.links.spec import Direction, DirectionSpec

EARLY = 0.0015
"""Seconds before its due time a pipe's timer is armed (asyncio's rounding is < 1 ms)."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class DirectionStats:
    """What one direction did; counters only grow. Written by the loop thread only."""

    packets: int = 0
    """Datagrams, IP packets or TCP chunks that entered the direction."""
    bytes: int = 0
    dropped: int = 0
    """Really dropped by the loss draw (UDP datagrams, IP packets in kernel mode)."""
    queue_drops: int = 0
    """Dropped because the direction's queue was full (drop-tail)."""
    modelled_losses: int = 0
    """TCP segment losses modelled as retransmission delay (proxy mode; nothing was dropped)."""
    modelled_delay: float = 0.0
    """Seconds of retransmission delay those modelled losses added."""


@dataclass
class LinkStats:
    """Accounting for results metadata: per direction, plus connections/flows seen."""

    up: DirectionStats = field(default_factory=DirectionStats)
    down: DirectionStats = field(default_factory=DirectionStats)
    connections: int = 0
    errors: int = 0

    def direction(self, which: Direction) -> DirectionStats:
        return self.up if which == "up" else self.down

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Shaper:
    """One direction's clock: serialisation at ``rate``, delay, jitter and loss draws.

    Shared by every flow crossing that direction, because a link has one bottleneck.
    """

    def __init__(self, spec: DirectionSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self._free_at = 0.0

    def lost(self) -> bool:
        """One loss draw (always False without loss, so no random numbers are used up)."""
        return self.spec.loss > 0 and self.rng.random() < self.spec.loss

    def jittered_delay(self) -> float:
        spec = self.spec
        if not spec.jitter:
            return spec.delay
        return max(0.0, spec.delay + self.rng.uniform(-spec.jitter, spec.jitter))

    def due(self, now: float, size: int) -> float:
        """When a ``size``-byte packet entering now leaves the far end (before FIFO order)."""
        if self.spec.rate:
            start = max(now, self._free_at)
            self._free_at = start + self.spec.serialisation(size)
            return self._free_at + self.jittered_delay()
        return now + self.jittered_delay()


class Pipe(Generic[T]):
    """A FIFO of items each released at its due time through ``deliver`` (loop thread only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[T], None]) -> None:
        self._loop = loop
        self._deliver = deliver
        self._queue: collections.deque[tuple[float, T, int]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last_due = 0.0
        self.queued_bytes = 0
        self.on_drain: Callable[[], None] | None = None
        """Called when the queue empties (TCP back-pressure resumes reading)."""
        self.closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, item: T, due: float, size: int = 0) -> float:
        """Queue ``item`` for ``due`` (never before an earlier item); returns the due used."""
        due = max(due, self._last_due)
        self._last_due = due
        if not self._queue and due <= self._loop.time():
            self._deliver(item)
            return due
        self._queue.append((due, item, size))
        self.queued_bytes += size
        if self._timer is None:
            self._arm()
        return due

    def _arm(self) -> None:
        due = self._queue[0][0]
        self._timer = self._loop.call_at(due - EARLY, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.closed:
            return
        for _ in range(10_000):  # bounded: the queue drains or the head is not yet due
            if not self._queue:
                break
            due, item, size = self._queue[0]
            remaining = due - self._loop.time()
            if remaining > EARLY:
                self._arm()
                return
            if remaining > 0:
                time.sleep(remaining)
            self._queue.popleft()
            self.queued_bytes -= size
            self._deliver(item)
        if self._queue:
            self._timer = self._loop.call_soon(self._fire)  # type: ignore[assignment]
            return
        if self.on_drain is not None:
            self.on_drain()

    def close(self) -> None:
        """Forget queued items (the flow is gone) and cancel the timer."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self.queued_bytes = 0


class LoopThread:
    """An asyncio loop in its own daemon thread, so sync code (CLI runs, tests) can own a link.

    ``call`` runs a coroutine there and waits for its result; ``stop`` is idempotent and safe
    from any thread except the loop's own.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Close what the link left open (transports) before the loop goes.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def call(self, coro: Coroutine[Any, Any, R], timeout: float = 10.0) -> R:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_soon(self, callback: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(callback)

    def stop(self, timeout: float = 5.0) -> None:
        if not self._started or not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
