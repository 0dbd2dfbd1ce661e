"""PRE work in worker processes, so the roles' cryptography runs on more than one core.

Why: umbral-pre holds the GIL for every operation (measured: two threads decrypting take as
long as one doing both halves), and opening one DELIVER (outer unwrap, two cfrag proofs,
decryption: ~2.5–3 ms) is about a third of all the CPU one reading costs. With every role in one
process the end-to-end rate is bounded by the *sum* of all roles' CPU on one core.

What moves: only pure computation: the data user's :meth:`DataUser._open` (unwrap the
bundle, verify both cfrags, decrypt), the gateway's share-1 re-encryption, and the DS's
share-2 re-encryption plus per-destination re-wrap. Every decision stays in the role's own
code in the role's process: signature, TS and window checks before, the sender binding, the
window commit and the verdict after. A worker that fails returns the reason as text, which the role
turns into its own verdict; nothing here writes a verdict.

The worker processes belong to the data user: they get its PRE and wrap secrets once, over the
multiprocessing pipe at start (never logged, stored or exported), and end with the role.
They are started with ``spawn`` (a fresh interpreter: ``sys.executable``, never a bare
``python``), so no lock or thread of the parent is inherited.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import os
import pickle
import selectors
import struct
import threading
from collections.abc import Callable
from typing import Any

_OPENER: Any = None
"""Per worker process: (backend, receiver key pair), set by :func:`_init`."""


def _init(secret: bytes, public: bytes, wrap_secret: bytes) -> None:
    global _OPENER
    import umbral_pre

    from drivers.ssdtf import rewrap
    from drivers.ssdtf.pre import PreKeyPair, UmbralBackend

    key = umbral_pre.SecretKey.from_be_bytes(secret) if secret else None
    wrap_keys = rewrap.from_secret("worker", wrap_secret) if wrap_secret else None
    _OPENER = (UmbralBackend(), PreKeyPair("worker", key, None, public, b""), wrap_keys)


def _reencrypt(
    capsule: bytes, jobs: list[tuple[bytes, bytes, bytes, bytes]]
) -> tuple[bool, list[bytes], str]:
    """The gateway's share-1 cfrag for each destination; a job = (kfrag, owner public, owner
    verifying, receiver public). (ok, cfrags in job order, problem)."""
    from drivers.errors import SafeLabError

    backend = _OPENER[0]
    try:
        cfrags = backend.reencrypt_all(capsule, jobs)
    except SafeLabError as error:
        return False, [], error.problem
    except Exception as error:
        return False, [], f"{type(error).__name__}: {error}"[:160]
    return True, cfrags, ""


def _transform(
    capsule: bytes,
    ct: bytes,
    cfrags: list[bytes],
    kfrag: bytes,
    keys: tuple[bytes, bytes, bytes],
    tag: bytes,
    wrap_public: bytes,
) -> tuple[bool, bytes, bytes, str]:
    """The DS's computation for one FWD: share-2 cfrag, then the per-destination re-wrap.
    (ok, ephemeral wrap key, wrapped bundle, problem); ``keys`` = owner public, owner
    verifying, receiver public (all public; the kfrag converts but decrypts nothing)."""
    from drivers.errors import SafeLabError
    from drivers.ssdtf import binding, rewrap

    backend = _OPENER[0]
    owner_public, owner_verifying, receiver_public = keys
    try:
        cfrag = backend.reencrypt(
            capsule,
            kfrag,
            owner_public=owner_public,
            owner_verifying=owner_verifying,
            receiver_public=receiver_public,
        )
        bundle = binding.encode_bundle(capsule, ct, [*cfrags, cfrag], tag)
        wrapped_capsule, wrapped_ct = rewrap.wrap(wrap_public, bundle)
    except SafeLabError as error:
        return False, b"", b"", error.problem
    except Exception as error:
        return False, b"", b"", f"{type(error).__name__}: {error}"[:160]
    return True, wrapped_capsule, wrapped_ct, ""


def _open(
    owner_public: bytes, owner_verifying: bytes, capsule: bytes, ct: bytes
) -> tuple[bool, bytes, bytes, str]:
    """(ok, plaintext, expected sender tag, problem) for one DELIVER's wrapped bundle."""
    from drivers.errors import SafeLabError
    from drivers.ssdtf import binding, rewrap

    backend, keys, wrap_keys = _OPENER
    try:
        bundle = rewrap.unwrap(wrap_keys, capsule, ct)
        inner_capsule, inner_ct, cfrags, expected = binding.decode_bundle(bundle)
        plaintext = backend.decrypt(
            keys,
            owner_public=owner_public,
            owner_verifying=owner_verifying,
            capsule=inner_capsule,
            cfrags=cfrags,
            ciphertext=inner_ct,
        )
    except SafeLabError as error:
        return False, b"", b"", error.problem
    except Exception as error:  # a worker never dies on input: the role decides
        return False, b"", b"", f"{type(error).__name__}: {error}"[:160]
    return True, plaintext, expected, ""


def _cpu() -> float:
    import time

    return time.process_time()


_CALLS: dict[str, Any] = {
    "open": _open,
    "transform": _transform,
    "reencrypt": _reencrypt,
    "cpu": _cpu,
}


_FRAME = struct.Struct(">I")
"""Every message on a worker pipe: a 4-byte big-endian length, then a pickle."""
_READ = 1 << 16


def _frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(body)) + body


def _frames(buffer: bytearray) -> list[bytes]:
    """Take every complete frame out of ``buffer`` (what one read brought, maybe several)."""
    out: list[bytes] = []
    pos, size = 0, len(buffer)
    while size - pos >= 4:
        (length,) = _FRAME.unpack_from(buffer, pos)
        if size - pos - 4 < length:
            break
        out.append(bytes(buffer[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    del buffer[:pos]
    return out


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _serve(conn: Any, secret: bytes, public: bytes, wrap_secret: bytes) -> None:
    """A worker process: answer ``(id, call, args)`` frames until ``None`` or the parent is
    gone. One ``read`` takes every task already queued (under load, several), so a busy
    worker pays one wake-up per batch, not one per task; each answer goes out as soon as it
    is computed, so the next stage of the pipeline never waits for the rest of a batch."""
    _init(secret, public, wrap_secret)
    fd = conn.fileno()
    _write(fd, _frame((0, True)))  # ready
    buffer = bytearray()
    while True:
        try:
            chunk = os.read(fd, _READ)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        for frame in _frames(buffer):
            message = pickle.loads(frame)
            if message is None:
                return
            ident, call, args = message
            _write(fd, _frame((ident, _CALLS[call](*args))))


class Done:
    """A worker's answer as the role's continuation sees it: :meth:`result` returns it, or
    raises when the worker process ended before answering. (Not a ``concurrent.futures``
    Future: its lock and condition cost more per task than the rest of the hand-off.)"""

    __slots__ = ("_error", "_value")

    def __init__(self, value: Any, error: BaseException | None = None) -> None:
        self._value = value
        self._error = error

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


Then = Callable[[Done], None]
"""The role's continuation; it runs in the pool's reader thread."""


class OpenWorkers:
    """Worker processes for one role: DELIVERs opened for one receiver (``secret``), or, with
    no secret, FWDs transformed (DS) and capsules re-encrypted (gateway).

    Continuations run **in submission order**, whichever process answers first: a role checks
    a message's sequence number against its window before it hands the message over and
    commits it in the continuation, so results committed out of order could fall behind the
    window and be refused as "too old". That happened: with two processes, one descheduled
    by the VM for a moment while the other raced ahead by more than the window (64), and the
    DS and the data user dropped 30-60 of 600 readings. A slow task now holds back the
    continuations after it (head-of-line), never drops them; the window check stays as strict.

    Measured costs that shaped it: a ``ProcessPoolExecutor`` cost ~0.25 ms of the parent's
    CPU per task (management and feeder threads) against ~0.03 ms for a pipe; a
    ``Connection.recv`` per task plus a ``Future`` per task cost ~0.13 ms over both sides.
    So: a pipe per process, length-prefixed pickles read in 64 KiB chunks (several answers per
    wake-up under load), *one* reader thread for the whole pool, and the role's continuation
    called straight from it. A task goes to the process with the fewest unanswered tasks.
    Sends happen outside the table lock, so a full pipe cannot stall the reader (which would
    dead-lock: the worker waits for the reader to drain its answers)."""

    def __init__(
        self, processes: int, secret: bytes = b"", public: bytes = b"", wrap_secret: bytes = b""
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[int, Then]] = {}
        """Task id -> (process index, continuation)."""
        self._order: collections.deque[int] = collections.deque()
        """Task ids not yet handed to their continuation, in submission order."""
        self._answered: dict[int, tuple[Then, Done]] = {}
        """Answers that wait for an earlier task's answer (see the class docstring)."""
        self._ids = itertools.count(1)
        self._conns: list[Any] = []
        self._fds: list[int] = []
        self._send_locks: list[threading.Lock] = []
        self._outstanding: list[int] = []
        self._procs: list[Any] = []
        self._dead: set[int] = set()
        for index in range(max(1, processes)):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_serve,
                args=(child, secret, public, wrap_secret),
                name=f"ssdtf-pre-{index}",
                daemon=True,
            )
            proc.start()
            child.close()  # so the reader sees EOF when the worker ends
            self._conns.append(parent)
            self._fds.append(parent.fileno())
            self._send_locks.append(threading.Lock())
            self._outstanding.append(0)
            self._procs.append(proc)
        self._buffers = [bytearray() for _ in self._conns]
        for index, fd in enumerate(self._fds):
            if not _wait_readable([fd], 60):
                self.close()
                raise RuntimeError("a PRE worker process did not start within 60 s")
            while not self._take(index):  # the "ready" frame
                if not self._fill(index):
                    self.close()
                    raise RuntimeError("a PRE worker process ended while starting")
        self._reader = threading.Thread(target=self._read, name="ssdtf-pre-reader", daemon=True)
        self._reader.start()

    def _fill(self, index: int) -> bool:
        try:
            chunk = os.read(self._fds[index], _READ)
        except OSError:
            return False
        self._buffers[index] += chunk
        return bool(chunk)

    def _take(self, index: int) -> list[Any]:
        return [pickle.loads(frame) for frame in _frames(self._buffers[index])]

    def _read(self) -> None:
        live = list(range(len(self._fds)))
        with selectors.DefaultSelector() as selector:
            for index in live:
                selector.register(self._fds[index], selectors.EVENT_READ, index)
            while live:
                for key, _ in selector.select():
                    index = key.data
                    if not self._fill(index):
                        selector.unregister(key.fd)
                        live.remove(index)
                        self._fail(index)
                        continue
                    with self._lock:
                        for ident, result in self._take(index):
                            entry = self._pending.pop(ident, None)
                            if entry is not None:
                                self._outstanding[index] -= 1
                                self._answered[ident] = (entry[1], Done(result))
                        ready = self._in_order()
                    for then, done in ready:
                        then(done)  # the role's continuation, in this thread

    def _in_order(self) -> list[tuple[Then, Done]]:
        """The answers whose every earlier task is answered too (call with the lock held)."""
        ready = []
        while self._order and self._order[0] in self._answered:
            ready.append(self._answered.pop(self._order.popleft()))
        return ready

    def _fail(self, index: int) -> None:
        """The worker is gone: nothing waiting on it hangs."""
        with self._lock:
            self._dead.add(index)
            lost = [i for i, (where, _) in self._pending.items() if where == index]
            for ident in lost:
                then = self._pending.pop(ident)[1]
                self._answered[ident] = (then, Done(None, RuntimeError("PRE worker process ended")))
            ready = self._in_order()
        for then, done in ready:
            then(done)

    def _call(self, then: Then, call: str, *args: Any, index: int | None = None) -> None:
        with self._lock:
            ident = next(self._ids)
            if index is None:
                index = min(range(len(self._fds)), key=self._outstanding.__getitem__)
            if index in self._dead:
                dead = True
            else:
                dead = False
                self._outstanding[index] += 1
                self._pending[ident] = (index, then)
                self._order.append(ident)
        if dead:
            then(Done(None, RuntimeError("PRE worker process ended")))
            return
        frame = _frame((ident, call, args))
        try:
            with self._send_locks[index]:
                _write(self._fds[index], frame)
        except OSError:
            # The worker is gone; its pipe's end of file reaches the reader, whose _fail
            # hands this failure over in order with the rest (never from this thread, which
            # would race the reader's continuations).
            with self._lock:
                if self._pending.pop(ident, None) is not None:
                    self._outstanding[index] -= 1
                    failure = Done(None, RuntimeError("PRE worker process ended"))
                    self._answered[ident] = (then, failure)

    def open(
        self, then: Then, owner_public: bytes, owner_verifying: bytes, capsule: bytes, ct: bytes
    ) -> None:
        """Unwrap, verify both cfrags, decrypt; ``then`` gets (ok, plaintext, tag, problem)."""
        self._call(then, "open", owner_public, owner_verifying, capsule, ct)

    def reencrypt(
        self, then: Then, capsule: bytes, jobs: list[tuple[bytes, bytes, bytes, bytes]]
    ) -> None:
        """Share-1 cfrags; ``then`` gets (ok, cfrags, problem)."""
        self._call(then, "reencrypt", capsule, jobs)

    def transform(
        self,
        then: Then,
        capsule: bytes,
        ct: bytes,
        cfrags: list[bytes],
        kfrag: bytes,
        keys: tuple[bytes, bytes, bytes],
        tag: bytes,
        wrap_public: bytes,
    ) -> None:
        """Share-2 cfrag and re-wrap; ``then`` gets (ok, wrap key, wrapped bundle, problem)."""
        self._call(then, "transform", capsule, ct, cfrags, kfrag, keys, tag, wrap_public)

    def cpu_seconds(self) -> float:
        """CPU seconds the worker processes used so far (for the benchmark)."""
        total = 0.0
        for index in range(len(self._fds)):
            answer: list[Done] = []
            arrived = threading.Event()

            def then(done: Done, answer: list[Done] = answer, arrived: Any = arrived) -> None:
                answer.append(done)
                arrived.set()

            self._call(then, "cpu", index=index)
            if not arrived.wait(30):
                raise RuntimeError("a PRE worker process did not answer within 30 s")
            total += float(answer[0].result())
        return total

    def close(self) -> None:
        for index, fd in enumerate(self._fds):
            with contextlib.suppress(OSError), self._send_locks[index]:
                _write(fd, _frame(None))
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(5)
        for conn in self._conns:
            conn.close()


def _wait_readable(fds: list[int], timeout: float) -> bool:
    with selectors.DefaultSelector() as selector:
        for fd in fds:
            selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(timeout))
