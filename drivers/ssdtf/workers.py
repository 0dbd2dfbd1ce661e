"""PRE work in worker processes, so the roles' cryptography runs on more than one core.

Why: umbral-pre holds the GIL for every operation (measured: two threads decrypting take as
long as one doing both halves), and opening one DELIVER (outer unwrap, two cfrag proofs,
decryption: ~4.2 ms) is about half of all the CPU one reading costs. With every role in one
process the end-to-end rate is bounded by the *sum* of all roles' CPU on one core.

What moves: only pure computation: the data user's :meth:`DataUser._open` (unwrap the
bundle, verify both cfrags, decrypt), the gateway's share-1 re-encryption, and the DS's
share-2 re-encryption plus per-destination re-wrap. Every decision stays in the role's own
code in the role's process: signature, TS and window checks before, the sender binding, the
window commit and the verdict after. A worker that fails returns the reason as text, which the role
turns into its own verdict; nothing here writes a verdict.

The worker processes belong to the data user: they get its PRE secret once, over the
multiprocessing pipe at start (never logged, stored or exported), and end with the role.
They are started with ``spawn`` (a fresh interpreter: ``sys.executable``, never a bare
``python``), so no lock or thread of the parent is inherited.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

_OPENER: Any = None
"""Per worker process: (backend, receiver key pair), set by :func:`_init`."""


def _init(secret: bytes, public: bytes) -> None:
    global _OPENER
    import umbral_pre

    from drivers.ssdtf.pre import PreKeyPair, UmbralBackend

    key = umbral_pre.SecretKey.from_be_bytes(secret) if secret else None
    _OPENER = (UmbralBackend(), PreKeyPair("worker", key, None, public, b""))


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
) -> tuple[bool, bytes, bytes, str]:
    """The DS's computation for one FWD: share-2 cfrag, then the per-destination re-wrap.
    (ok, wrapped capsule, wrapped ct, problem); ``keys`` = owner public, owner verifying,
    receiver public (all public; the kfrag converts but decrypts nothing)."""
    from drivers.errors import SafeLabError
    from drivers.ssdtf import binding

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
        wrapped_capsule, wrapped_ct = backend.wrap(receiver_public, bundle)
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
    from drivers.ssdtf import binding

    backend, keys = _OPENER
    try:
        bundle = backend.unwrap(keys, capsule, ct)
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


class OpenWorkers:
    """A pool of ``processes`` workers opening DELIVERs for one receiver (``secret``), or,
    with no secret, transforming FWDs for the DS."""

    def __init__(self, processes: int, secret: bytes = b"", public: bytes = b"") -> None:
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(
            max(1, processes), mp_context=context, initializer=_init, initargs=(secret, public)
        )
        self.pool.submit(int).result(timeout=60)  # started and initialised before traffic

    def open(
        self, owner_public: bytes, owner_verifying: bytes, capsule: bytes, ct: bytes
    ) -> Future[tuple[bool, bytes, bytes, str]]:
        return self.pool.submit(_open, owner_public, owner_verifying, capsule, ct)

    def reencrypt(
        self, capsule: bytes, jobs: list[tuple[bytes, bytes, bytes, bytes]]
    ) -> Future[tuple[bool, list[bytes], str]]:
        return self.pool.submit(_reencrypt, capsule, jobs)

    def transform(
        self,
        capsule: bytes,
        ct: bytes,
        cfrags: list[bytes],
        kfrag: bytes,
        keys: tuple[bytes, bytes, bytes],
        tag: bytes,
    ) -> Future[tuple[bool, bytes, bytes, str]]:
        return self.pool.submit(_transform, capsule, ct, cfrags, kfrag, keys, tag)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
