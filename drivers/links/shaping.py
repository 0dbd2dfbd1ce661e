"""The common core of both modes: when a packet leaves a direction, and a loop that runs it.

Why our own timers instead of ``loop.call_at``: asyncio hands the selector a timeout that is
rounded up to whole milliseconds twice (once in ``selectors``, once more by float error in
``epoll.poll``), so a ``call_at`` fires up to ~2 ms late -- measured here: 1.7 ms median late
for a timer 8.5 ms ahead. That alone would break the ±1 ms accuracy goal. A
:class:`PreciseTimers` arms a Linux ``timerfd`` (nanosecond, absolute ``CLOCK_MONOTONIC``,
the clock ``loop.time()`` reads) and the loop wakes on its readability, so a packet leaves
within tens of microseconds of its due time and the loop never blocks in a sleep.

Why FIFO: packets are never reordered, even with jitter: a cellular bearer delivers in order
(RLC acknowledged mode), TCP over a reordering link would show spurious fast retransmits the
real networks we model do not have, and the TCP proxy must keep a byte stream in order anyway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import heapq
import itertools
import os
import random
import threading
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from drivers.links.spec import Direction, DirectionSpec, LinkSpec

TOLERANCE = 20e-6
"""Items due within this many seconds are released together (below timer wake-up noise)."""
_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1
_PR_SET_TIMERSLACK = 29


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)


class PreciseTimers:
    """Callbacks at absolute ``loop.time()`` instants, woken by a ``timerfd`` (loop thread only).

    One per event loop (:func:`precise_timers`); a heap of (when, order, callback).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._armed_for: float | None = None
        fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_create: {os.strerror(errno)}")
        self._fd = fd
        # 1 ns timer slack for this (the loop's) thread: the default 50 us is noise we avoid.
        _libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
        loop.add_reader(fd, self._expired)

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._order), callback))
        if self._armed_for is None or when < self._armed_for:
            self._arm(when)

    def _arm(self, when: float) -> None:
        self._armed_for = when
        when = max(when, 1e-9)  # zero would disarm; a past instant fires at once
        spec = _Itimerspec()
        spec.it_value.tv_sec = int(when)
        spec.it_value.tv_nsec = int((when - int(when)) * 1e9)
        if _libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")

    def _expired(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        self._armed_for = None
        horizon = self._loop.time() + TOLERANCE
        for _ in range(100_000):  # bounded: the heap empties or its head lies in the future
            if not self._heap or self._heap[0][0] > horizon:
                break
            _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception as exc:  # one broken flow must not stall every other timer
                self._loop.call_exception_handler(
                    {"message": "link timer callback failed", "exception": exc}
                )
        if self._heap:
            self._arm(self._heap[0][0])

    def close(self) -> None:
        self._heap.clear()
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


_TIMERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PreciseTimers] = (
    weakref.WeakKeyDictionary()
)


def precise_timers(loop: asyncio.AbstractEventLoop) -> PreciseTimers:
    """The loop's :class:`PreciseTimers`, created on first use (call from the loop thread)."""
    timers = _TIMERS.get(loop)
    if timers is None:
        timers = _TIMERS[loop] = PreciseTimers(loop)
    return timers


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
        self._timers = precise_timers(loop)
        self._armed = False
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
            self._safe_deliver(item)
            return due
        self._queue.append((due, item, size))
        self.queued_bytes += size
        if not self._armed:
            self._arm()
        return due

    def _safe_deliver(self, item: T) -> None:
        try:
            self._deliver(item)
        except Exception as exc:  # a flow that broke must not stall the rest of the pipe
            self._loop.call_exception_handler({"message": "link delivery failed", "exception": exc})

    def _arm(self) -> None:
        self._armed = True
        self._timers.call_at(self._queue[0][0], self._fire)

    def _fire(self) -> None:
        self._armed = False
        if self.closed:
            return
        horizon = self._loop.time() + TOLERANCE
        for _ in range(100_000):  # bounded: the queue drains or its head is not yet due
            if not self._queue or self._queue[0][0] > horizon:
                break
            _, item, size = self._queue.popleft()
            self.queued_bytes -= size
            self._safe_deliver(item)
        if self._queue:
            self._arm()
        elif self.on_drain is not None:
            self.on_drain()

    def close(self) -> None:
        """Forget queued items (the flow is gone) and cancel the timer."""
        self.closed = True
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
        timers = _TIMERS.pop(self.loop, None)
        if timers is not None:
            timers.close()
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


def shapers_for(spec: LinkSpec) -> dict[Direction, Shaper]:
    """One shaper per direction, each with its own random stream drawn from ``spec.seed``, so
    both link modes drop the same packets for the same spec (proxy and kernel agree)."""
    rng = random.Random(spec.seed)
    return {
        "up": Shaper(spec.up, random.Random(rng.getrandbits(64))),
        "down": Shaper(spec.down, random.Random(rng.getrandbits(64))),
    }
