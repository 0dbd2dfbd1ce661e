"""One timer thread and one worker thread per role that needs them, instead of a thread per
handshake (issue 10: 1,500 HELLOs left ~1,200 live ``threading.Timer`` threads).

:class:`Scheduler` keeps deadlines in a heap and runs each due callback on its single thread;
:class:`SerialWorker` runs slow jobs (an MQTT take-over connects to the broker) one at a time,
at most one queued job per key and a bounded queue, so a flood cannot grow either. Every
callback runs under a guard: an exception is passed to ``on_error`` and the thread lives on.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

ErrorHook = Callable[[str, BaseException], None]


def _ignore(what: str, error: BaseException) -> None:
    return None


class Scheduler:
    """``call_later(delay, fn, *args)`` on one daemon thread; ``cancel`` by the returned id."""

    def __init__(self, name: str, on_error: ErrorHook = _ignore) -> None:
        self.name = name
        self.on_error = on_error
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
            self._thread.start()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> int:
        with self._cond:
            if self._stopped:
                return 0
            handle = next(self._ids)
            heapq.heappush(self._heap, (time.monotonic() + delay, handle, fn, args))
            self._ensure_thread()
            self._cond.notify()
            return handle

    def cancel(self, handle: int) -> None:
        """Remove a pending call (the heap holds only live deadlines, so its size is the
        number of handshakes actually waiting)."""
        with self._cond:
            for index, item in enumerate(self._heap):
                if item[1] == handle:
                    self._heap[index] = self._heap[-1]
                    self._heap.pop()
                    heapq.heapify(self._heap)
                    return

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            try:
                fn(*args)
            except Exception as error:  # a timer callback must never kill the timer thread
                with contextlib.suppress(Exception):
                    self.on_error(getattr(fn, "__name__", "timer"), error)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)


class SerialWorker:
    """Runs submitted jobs one at a time on one thread; a key already queued is not queued
    again, and beyond ``limit`` queued jobs new ones are refused (``submit`` returns False)."""

    def __init__(self, name: str, limit: int = 64, on_error: ErrorHook = _ignore) -> None:
        self.name = name
        self.limit = limit
        self.on_error = on_error
        self._jobs: OrderedDict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = OrderedDict()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def submit(self, key: str, fn: Callable[..., Any], *args: Any) -> bool:
        with self._cond:
            if self._stopped:
                return False
            if key in self._jobs:
                return True
            if len(self._jobs) >= self.limit:
                return False
            self._jobs[key] = (fn, args)
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
            return True

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)

    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                _, (fn, args) = self._jobs.popitem(last=False)
            try:
                fn(*args)
            except Exception as error:
                with contextlib.suppress(Exception):
                    self.on_error(getattr(fn, "__name__", "job"), error)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._jobs.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)
