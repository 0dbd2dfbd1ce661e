"""The token as the optimisation lab sees it: every card access timed, counted and checked,
and card outages injected from outside the card stack.

:class:`WatchedToken` wraps any driver-layer token (the emulated SIM included) without
changing it: sessions it opens are wrapped too, so the lab knows the card's busy time (open,
login, find, sign, close), how many signatures were made and by whom (the request path or a
background task), how many card accesses failed, and that no signature value was ever
produced twice (the paper: "never reuse a signature value"). An outage
(:meth:`WatchedToken.outage`) makes every card access fail with the
:class:`~drivers.cards.errors.TransportError` the real PC/SC stack raises when the card stops
answering, so back-off is exercised by the same exceptions a real SIM gives.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from drivers.cards.errors import TransportError


@dataclass
class CardCounters:
    """What the card did in a run (or since a mark)."""

    signatures: int = 0
    signatures_background: int = 0
    sign_ns: int = 0
    busy_ns: int = 0
    busy_background_ns: int = 0
    errors: int = 0
    accesses: int = 0
    duplicates: int = 0


class WatchedToken:
    """A token proxy: same interface, every card access timed and checkable."""

    def __init__(self, token: Any) -> None:
        self._token = token
        self.counters = CardCounters()
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._outage_until = 0.0
        self._slow = (0.0, 0.0)
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._token, name)

    # -- faults --------------------------------------------------------------------------
    def outage(self, seconds: float) -> None:
        """From now on, for ``seconds``, every card access fails (the card does not answer)."""
        self._outage_until = time.monotonic() + seconds

    def slowdown(self, seconds: float, delay_s: float) -> None:
        """From now on, for ``seconds``, every card access answers ``delay_s`` late (a card
        busy with something else, a modem retrying): exercises authentication time-outs."""
        self._slow = (time.monotonic() + seconds, delay_s)

    @property
    def out(self) -> bool:
        return time.monotonic() < self._outage_until

    # -- attribution ---------------------------------------------------------------------
    @contextmanager
    def background(self) -> Iterator[None]:
        """Card work inside this block (in this thread) is a background task's."""
        self._local.background = True
        try:
            yield
        finally:
            self._local.background = False

    def _is_background(self) -> bool:
        return bool(getattr(self._local, "background", False))

    def snapshot(self) -> CardCounters:
        with self._lock:
            return CardCounters(**vars(self.counters))

    def _account(self, ns: int, *, failed: bool = False, signature: Any = None) -> None:
        with self._lock:
            c = self.counters
            c.accesses += 1
            c.busy_ns += ns
            background = self._is_background()
            if background:
                c.busy_background_ns += ns
            if failed:
                c.errors += 1
            if signature is not None:
                c.signatures += 1
                c.sign_ns += ns
                if background:
                    c.signatures_background += 1
                value = hashlib.sha256(bytes(signature.der)).digest()
                if value in self._seen:
                    c.duplicates += 1
                self._seen.add(value)

    def call(self, target: Any, name: str, *args: Any, sign: bool = False) -> Any:
        start = time.perf_counter_ns()
        if self.out:
            self._account(time.perf_counter_ns() - start, failed=True)
            raise TransportError(
                "the card did not answer (injected card outage)",
                "wait for the card to come back; retries should back off",
            )
        until, delay = self._slow
        if delay and time.monotonic() < until:
            time.sleep(delay)
        try:
            result = getattr(target, name)(*args)
        except Exception:
            self._account(time.perf_counter_ns() - start, failed=True)
            raise
        self._account(time.perf_counter_ns() - start, signature=result if sign else None)
        return result

    def open(self) -> WatchedSession:
        return WatchedSession(self, self.call(self._token, "open"))


class WatchedSession:
    """A token session whose calls go through :meth:`WatchedToken.call`."""

    def __init__(self, watch: WatchedToken, session: Any) -> None:
        self._watch = watch
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def login(self, pin: Any) -> None:
        self._watch.call(self._session, "login", pin)

    def find_key(self, selector: str | None = None) -> Any:
        return self._watch.call(self._session, "find_key", selector)

    def sign_init(self, key: Any, hash_on: Any = None) -> None:
        self._watch.call(self._session, "sign_init", key, *(() if hash_on is None else (hash_on,)))

    def sign_digest(self, digest: bytes) -> Any:
        return self._watch.call(self._session, "sign_digest", digest, sign=True)

    def sign(self, data: bytes) -> Any:
        return self._watch.call(self._session, "sign", data, sign=True)

    def sign_init_and_sign(self, key: Any, hash_on: Any, data: bytes) -> Any:
        return self._watch.call(self._session, "sign_init_and_sign", key, hash_on, data, sign=True)

    def close(self) -> None:
        start = time.perf_counter_ns()
        try:
            self._session.close()
        finally:
            self._watch._account(time.perf_counter_ns() - start)

    def __enter__(self) -> WatchedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
