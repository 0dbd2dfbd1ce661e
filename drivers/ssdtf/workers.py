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

import contextlib
import itertools
import multiprocessing
import threading
from concurrent.futures import Future
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
        cfrags = [
            backend.reencrypt(
                capsule,
                kfrag,
                owner_public=owner_public,
                owner_verifying=owner_verifying,
                receiver_public=receiver_public,
            )
            for kfrag, owner_public, owner_verifying, receiver_public in jobs
        ]
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


def _serve(conn: Any, secret: bytes, public: bytes, wrap_secret: bytes) -> None:
    """A worker process: answer ``(id, call, args)`` until ``None`` or the parent is gone."""
    _init(secret, public, wrap_secret)
    conn.send((0, True))  # ready
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        ident, call, args = message
        conn.send((ident, _CALLS[call](*args)))


class OpenWorkers:
    """Worker processes for one role: DELIVERs opened for one receiver (``secret``), or, with
    no secret, FWDs transformed (DS) and capsules re-encrypted (gateway).

    A pipe per process and one reader thread, not a ``ProcessPoolExecutor``: measured, the
    executor's management and feeder threads cost ~0.25 ms of the parent's CPU per task
    against ~0.03 ms for a pipe, which matters when a reading needs three tasks."""

    def __init__(
        self, processes: int, secret: bytes = b"", public: bytes = b"", wrap_secret: bytes = b""
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._futures: dict[int, Future[Any]] = {}
        self._ids = itertools.count(1)
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._readers: list[threading.Thread] = []
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
            if not parent.poll(60):
                proc.kill()
                raise RuntimeError("a PRE worker process did not start within 60 s")
            parent.recv()
            reader = threading.Thread(
                target=self._read, args=(parent,), name=f"ssdtf-pre-reader-{index}", daemon=True
            )
            reader.start()
            self._conns.append(parent)
            self._procs.append(proc)
            self._readers.append(reader)

    def _read(self, conn: Any) -> None:
        while True:
            try:
                ident, result = conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._futures.pop(ident, None)
            if future is not None:
                future.set_result(result)  # runs the role's continuation in this thread
        with self._lock:  # the worker is gone: nothing waiting on it hangs
            pending = [f for f in self._futures.values() if not f.done()]
        for future in pending:
            future.set_exception(RuntimeError("PRE worker process ended"))

    def _call(self, call: str, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            ident = next(self._ids)
            self._futures[ident] = future
            conn = self._conns[ident % len(self._conns)]
            conn.send((ident, call, args))
        return future

    def open(
        self, owner_public: bytes, owner_verifying: bytes, capsule: bytes, ct: bytes
    ) -> Future[tuple[bool, bytes, bytes, str]]:
        return self._call("open", owner_public, owner_verifying, capsule, ct)

    def reencrypt(
        self, capsule: bytes, jobs: list[tuple[bytes, bytes, bytes, bytes]]
    ) -> Future[tuple[bool, list[bytes], str]]:
        return self._call("reencrypt", capsule, jobs)

    def transform(
        self,
        capsule: bytes,
        ct: bytes,
        cfrags: list[bytes],
        kfrag: bytes,
        keys: tuple[bytes, bytes, bytes],
        tag: bytes,
        wrap_public: bytes,
    ) -> Future[tuple[bool, bytes, bytes, str]]:
        return self._call("transform", capsule, ct, cfrags, kfrag, keys, tag, wrap_public)

    def cpu_seconds(self) -> float:
        """CPU seconds the worker processes used so far (for the benchmark)."""
        with self._lock:
            conns = list(self._conns)
        total = 0.0
        for index in range(len(conns)):
            future: Future[Any] = Future()
            with self._lock:
                ident = next(self._ids)
                while ident % len(conns) != index:
                    ident = next(self._ids)
                self._futures[ident] = future
                conns[index].send((ident, "cpu", ()))
            total += float(future.result(timeout=30))
        return total

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.send(None)
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for reader in self._readers:
            reader.join(5)
        for conn in self._conns:
            conn.close()
