"""The one interface every key holder implements.

A token is used in the order the paper's Table 1 gives for PKCS#11, and every later key holder
(an IoT SAFE applet over APDUs, a TLS handshake signer, a JWT signer, an SSDTF role) follows
the same order, so the experiment runner and the console never care what is behind it:

    session = token.open()            # phase "open"      (C_OpenSession / channel + SELECT)
    session.login(pin)                # phase "login"     (C_Login / VERIFY PIN; no-op if none)
    key = session.find_key()          # phase "find"      (C_FindObjects / object list)
    session.sign_init(key)            # phase "sign_init" (C_SignInit / COMPUTE SIGNATURE INIT)
    signature = session.sign(data)    # phase "sign"      (C_Sign / COMPUTE SIGNATURE UPDATE)
    session.close()                   # not timed

Each phase is timed with :func:`time.perf_counter_ns` (monotonic) by this base class, so every
implementation is timed the same way; implementations only write the ``_open``/``_login``/...
hooks. The last duration of each phase is in :attr:`TokenSession.phase_ns`.

Thread safety: a physical token does one thing at a time (a SIM is a serial device), so every
token carries a :attr:`Token.device_lock` shared by all :class:`Token` objects that reach the
same device (see :func:`device_lock_for`). Every phase holds it; a caller that needs several
phases back to back without interleaving (a trial) holds it around them too (it is re-entrant).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from drivers.errors import KeyUsageError

PHASES: tuple[str, ...] = ("open", "login", "find", "sign_init", "sign")
"""Phase names, in the order of the paper's Table 1."""

T = TypeVar("T")


class HashOn(Enum):
    """Where the SHA-256 of the data is computed before the ECDSA operation."""

    HOST = "host"
    """The host hashes and the token signs the 32-byte digest (CKM_ECDSA); what TLS does."""
    TOKEN = "token"
    """The token hashes the data itself (CKM_ECDSA_SHA256, on-card hashing)."""


class Signature:
    """An ECDSA signature in both encodings users need: raw r‖s (JWT, IoT SAFE) and DER (X.509).

    A token returns whichever encoding it produces; the other one is computed on first use and
    kept, so converting costs nothing inside a timed trial.
    """

    __slots__ = ("_der", "_field_bytes", "_raw")

    def __init__(
        self, *, raw: bytes | None = None, der: bytes | None = None, field_bytes: int = 32
    ) -> None:
        if raw is None and der is None:
            raise ValueError("a signature needs raw or DER bytes")
        if raw is not None and len(raw) % 2:
            raise ValueError(f"raw ECDSA signature has odd length {len(raw)}")
        self._raw = raw
        self._der = der
        self._field_bytes = len(raw) // 2 if raw is not None else field_bytes

    @classmethod
    def from_der(cls, der: bytes, field_bytes: int = 32) -> Signature:
        return cls(der=der, field_bytes=field_bytes)

    @classmethod
    def from_raw(cls, raw: bytes) -> Signature:
        return cls(raw=raw)

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            r, s = decode_dss_signature(self.der)
            size = self._field_bytes
            self._raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return self._raw

    @property
    def der(self) -> bytes:
        if self._der is None:
            raw = self.raw
            half = len(raw) // 2
            self._der = encode_dss_signature(
                int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
            )
        return self._der

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.der == other.der

    def __hash__(self) -> int:
        return hash(self.der)

    def __repr__(self) -> str:
        return f"Signature(raw={self.raw.hex()})"

    def verify(self, public_key: ec.EllipticCurvePublicKey, data: bytes, hash_on: HashOn) -> bool:
        """True if this signs ``data`` (SHA-256) under ``public_key``; ``hash_on`` is informative.

        Both hash modes sign SHA-256(data), so verification is the same; the argument exists so
        callers state what they asked the token to do.
        """
        del hash_on
        try:
            public_key.verify(self.der, data, ec.ECDSA(hashes.SHA256()))
        except Exception:
            return False
        return True

    def verify_digest(self, public_key: ec.EllipticCurvePublicKey, digest: bytes) -> bool:
        """True if this signs the given SHA-256 ``digest`` under ``public_key``."""
        try:
            public_key.verify(self.der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except Exception:
            return False
        return True


@dataclass(frozen=True)
class KeyInfo:
    """What a token says about one signing key. ``ref`` is the implementation's own handle."""

    label: str
    key_id: str
    """Hex of CKA_ID (PKCS#11) or the key identifier (IoT SAFE); empty when there is none."""
    curve: str
    """``secp256r1``, ``brainpoolP256r1``, or what the token reports (``RSA-2048``, ...)."""
    can_sign: bool
    has_certificate: bool = False
    ref: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TokenInfo:
    """Identity of a token, as stored with every run and shown in the console."""

    kind: str
    """``software``, ``openssl-cli``, ``pkcs11`` (later ``iotsafe``...)."""
    uri: str
    """How to select this token again; never contains a PIN."""
    label: str
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    module: str = ""
    """PKCS#11 module path, openssl binary, ... whatever code does the signing."""
    emulated: bool = False
    """True for an emulated card: its timing comes from a profile, not hardware."""
    flags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "uri": self.uri,
            "label": self.label,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "module": self.module,
            "emulated": self.emulated,
            "flags": list(self.flags),
        }


class Pin:
    """A PIN that does not show itself in reprs, logs, tracebacks or exports."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The PIN itself, for the one call that hands it to the token."""
        return self._value

    def __repr__(self) -> str:
        return "Pin(<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # pragma: no cover - defensive
        raise TypeError("a PIN is never pickled")


PinProvider = Callable[[], Pin | None]
"""Called at most once per login when the token needs a PIN; ``None`` means the user cancelled."""


_DEVICE_LOCKS: dict[str, threading.RLock] = {}
_DEVICE_LOCKS_GUARD = threading.Lock()


def device_lock_for(device_identity: str) -> threading.RLock:
    """The lock of one physical device; the same identity always gets the same lock."""
    with _DEVICE_LOCKS_GUARD:
        return _DEVICE_LOCKS.setdefault(device_identity, threading.RLock())


class TokenSession(ABC):
    """An open session (or card channel) on a token; phases after ``open`` happen here."""

    def __init__(self, token: Token) -> None:
        self.token = token
        self.phase_ns: dict[str, int] = {}
        self._hash_on = HashOn.HOST
        self._closed = False

    def _timed(self, phase: str, call: Callable[..., T], *args: Any) -> T:
        with self.token.device_lock:
            start = time.perf_counter_ns()
            result = call(*args)
            self.phase_ns[phase] = time.perf_counter_ns() - start
        return result

    def login(self, pin: Pin | None) -> None:
        """Log in with ``pin``; tokens without a PIN ignore it. A refusal is never retried."""
        self._timed("login", self._login, pin)

    def find_key(self, selector: str | None = None) -> KeyInfo:
        """The signing key named by ``selector`` (label or hex id), or the token's only one."""
        return self._timed("find", self._find_key, selector)

    def read_certificate(self, selector: str | None = None) -> bytes | None:
        """The DER certificate stored with the key ``selector`` names, read from the token in
        this session, before any login (no cache): what a client that takes its certificate
        from the token pays per session (OpenVPN's ``pkcs11-id``). Timed as the ``cert``
        phase; ``None`` where this token keeps no such certificate."""
        return self._timed("cert", self._read_certificate, selector)

    def _read_certificate(self, selector: str | None) -> bytes | None:
        del selector
        return None

    def sign_init(self, key: KeyInfo, hash_on: HashOn = HashOn.HOST) -> None:
        """Prepare a signature with ``key`` (mechanism set-up)."""
        self._hash_on = hash_on
        self._timed("sign_init", self._sign_init, key, hash_on)

    def sign(self, data: bytes) -> Signature:
        """Sign SHA-256(``data``) with the key given to :meth:`sign_init`."""
        return self._timed("sign", self._sign, data, self._hash_on)

    def sign_digest(self, digest: bytes) -> Signature:
        """Sign a SHA-256 ``digest`` the caller computed (TLS CertificateVerify, OpenVPN).

        Call :meth:`sign_init` with :attr:`HashOn.HOST` first. Timed as the ``sign`` phase.
        """
        return self._timed("sign", self._sign_digest, digest)

    def _sign_digest(self, digest: bytes) -> Signature:
        raise KeyUsageError(
            f"{self.token.info.label!r} cannot sign a digest computed elsewhere",
            "use a token that signs prehashed data (software, PKCS#11 CKM_ECDSA, IoT SAFE)",
        )

    def sign_init_and_sign(self, key: KeyInfo, hash_on: HashOn, data: bytes) -> Signature:
        """:meth:`sign_init` then :meth:`sign`, timed as the same two phases, with less overhead.

        The sign_only trial's hot path: one lock acquisition and three clock reads instead of
        two of each plus two wrapper calls. With a 45 µs software signature the wrappers alone
        were ~6% of a trial; for a token that signs in 0.1 ms every µs is visible.
        """
        clock = time.perf_counter_ns
        with self.token.device_lock:
            start = clock()
            self._sign_init(key, hash_on)
            middle = clock()
            signature = self._sign(data, hash_on)
            end = clock()
        self._hash_on = hash_on
        self.phase_ns["sign_init"] = middle - start
        self.phase_ns["sign"] = end - middle
        return signature

    def close(self) -> None:
        """Close the session; safe to call twice. Not timed."""
        if self._closed:
            return
        self._closed = True
        with self.token.device_lock:
            self._close()

    def __enter__(self) -> TokenSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _login(self, pin: Pin | None) -> None: ...

    @abstractmethod
    def _find_key(self, selector: str | None) -> KeyInfo: ...

    @abstractmethod
    def _sign_init(self, key: KeyInfo, hash_on: HashOn) -> None: ...

    @abstractmethod
    def _sign(self, data: bytes, hash_on: HashOn) -> Signature: ...

    @abstractmethod
    def _close(self) -> None: ...


class Token(ABC):
    """A key holder: something that can open sessions and sign with a key it keeps."""

    info: TokenInfo
    keeps_trace: bool = False
    """True for tokens whose :meth:`last_trace` has content (cards: APDUs)."""
    key_selector: str | None = None
    """The key the token's URI names (``object=`` / ``id=``); ``None``: the only signing key."""

    def __init__(self, info: TokenInfo, device_identity: str) -> None:
        self.info = info
        self.device_lock = device_lock_for(device_identity)

    @property
    def needs_login(self) -> bool:
        """True when signing needs a PIN (PKCS#11 CKF_LOGIN_REQUIRED, a SIM's PIN)."""
        return False

    def open(self) -> TokenSession:
        """Open a session; its duration is the ``open`` phase of the returned session."""
        with self.device_lock:
            start = time.perf_counter_ns()
            session = self._open()
            session.phase_ns["open"] = time.perf_counter_ns() - start
        return session

    def pin_status(self) -> str:
        """What the token says about PIN tries (``ok``, ``count low``, ``final try``, ...)."""
        return "not applicable"

    @abstractmethod
    def _open(self) -> TokenSession: ...

    @abstractmethod
    def keys(self) -> list[KeyInfo]:
        """Every key the token shows without logging in (public objects), signing keys first."""

    @abstractmethod
    def public_key(self, selector: str | None = None) -> ec.EllipticCurvePublicKey:
        """The public key of the signing key, to verify what the token signs."""

    def certificate(self, selector: str | None = None) -> x509.Certificate | None:
        """The certificate stored with the key, where the token stores one."""
        del selector
        return None

    def last_trace(self, count: int = 20) -> tuple[Any, ...]:
        """The last ``count`` exchanges with the device (APDUs for a card); ``()`` if none."""
        del count
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook, most tokens hold nothing
        """Release what the token holds (library handles, temp files). Safe to call twice."""

    def __enter__(self) -> Token:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CURVES: dict[str, ec.EllipticCurve] = {
    "secp256r1": ec.SECP256R1(),
    "brainpoolP256r1": ec.BrainpoolP256R1(),
}
"""The curves of the IoT SAFE standard, by their usual name."""

CURVE_ALIASES: dict[str, str] = {
    "p256": "secp256r1",
    "p-256": "secp256r1",
    "prime256v1": "secp256r1",
    "secp256r1": "secp256r1",
    "brainpoolp256r1": "brainpoolP256r1",
    "bp256": "brainpoolP256r1",
}
