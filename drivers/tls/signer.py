"""A token as a digest signer for handshakes: counts, times and keeps errors of every signature.

TLS, DTLS and OpenVPN hand over a digest and want a DER ECDSA signature; :class:`TokenSigner`
does that with any token of the driver layer. Two ways to reach the key, the paper's two modes
inside a handshake (the "PKCS#11 session/key-handle reuse" optimisation):

- ``reuse_session=True``: one session opened, logged in and the key found once, then each
  signature is sign init → sign (sign_only);
- ``reuse_session=False``: every signature opens, logs in, finds, signs and closes (total).

A signature requested from inside OpenSSL cannot raise through C: a failure is kept in
:attr:`TokenSigner.last_error` and the handshake fails; the caller re-raises it with
:meth:`raise_if_failed` so the user sees "card removed", not an OpenSSL alert.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from drivers.errors import SafeLabError
from drivers.tokens.base import HashOn, KeyInfo, Pin, Signature, Token, TokenSession


@dataclass
class SignRecord:
    """One signature made for a handshake: when, how long, digest length."""

    start_ns: int
    duration_ns: int
    digest_len: int


@dataclass
class TokenSigner:
    token: Token
    pin: Pin | None = None
    reuse_session: bool = True
    key_selector: str | None = None
    records: list[SignRecord] = field(default_factory=list)
    last_error: BaseException | None = None

    def __post_init__(self) -> None:
        self._session: TokenSession | None = None
        self._key: KeyInfo | None = None
        self._connection: TokenSession | None = None
        """A fresh-session signer's session for the current connection (see
        :meth:`begin_connection`)."""
        self._lock = threading.Lock()
        self._closed = False

    @property
    def count(self) -> int:
        """Signatures made so far (the tests check 1 per full handshake, 0 per resumed)."""
        return len(self.records)

    def mark(self) -> int:
        """A position in :attr:`records`; :meth:`since` gives what came after it."""
        return len(self.records)

    def since(self, mark: int) -> list[SignRecord]:
        return self.records[mark:]

    def _open(self) -> tuple[TokenSession, KeyInfo]:
        if self._closed:
            # A handshake still in flight when its client was closed must not open a new
            # session nobody closes: a PKCS#11 login stays process-wide while it is open.
            raise SafeLabError("the token signer was closed", "start a new run")
        session = self.token.open()
        try:
            session.login(self.pin)
            key = session.find_key(self.key_selector)
        except BaseException:
            session.close()
            raise
        return session, key

    def begin_connection(self, *, read_certificate: bool) -> bytes | None:
        """Open this connection's token session now and, if asked, read the key's certificate
        from the token (no cache, no login needed): OpenVPN's PKCS#11 mode does this when the
        client starts, before its handshake. The connection's signature then logs in, finds
        the key and signs in this same session, and :meth:`end_connection` closes it, so a
        connection still costs one session (open, login, find, sign) plus the certificate
        read.

        Only for a signer that opens a session per connection (``reuse_session=False``).
        Returns the certificate's DER bytes, or ``None`` when not read or not on the token.
        """
        if self.reuse_session:
            raise SafeLabError(
                "a kept token session has no per-connection session to open",
                "use reuse_session=False (the paper's condition) for begin_connection",
            )
        with self._lock, self.token.device_lock:
            self._end_connection()
            if self._closed:
                raise SafeLabError("the token signer was closed", "start a new run")
            session = self.token.open()
            try:
                der = session.read_certificate(self.key_selector) if read_certificate else None
            except BaseException:
                session.close()
                raise
            self._connection = session
        return der

    def end_connection(self) -> None:
        """Close the connection's session (if one is open). Safe to call twice."""
        with self._lock:
            self._end_connection()

    def _end_connection(self) -> None:
        if self._connection is not None:
            session, self._connection = self._connection, None
            session.close()

    def warm_up(self) -> None:
        """Open the reused session now, so the first handshake does not pay for it."""
        if self.reuse_session and self._session is None:
            self._session, self._key = self._open()

    def sign_digest(self, digest: bytes) -> Signature:
        """Sign ``digest`` with the token; records the time. Raises on failure."""
        with self._lock, self.token.device_lock:
            start = time.perf_counter_ns()
            if self.reuse_session:
                if self._session is None:
                    self._session, self._key = self._open()
                assert self._key is not None
                self._session.sign_init(self._key, HashOn.HOST)
                signature = self._session.sign_digest(digest)
            elif self._connection is not None:
                session = self._connection  # opened at the connection's start
                session.login(self.pin)
                key = session.find_key(self.key_selector)
                session.sign_init(key, HashOn.HOST)
                signature = session.sign_digest(digest)
            else:
                session, key = self._open()
                try:
                    session.sign_init(key, HashOn.HOST)
                    signature = session.sign_digest(digest)
                finally:
                    session.close()
            self.records.append(SignRecord(start, time.perf_counter_ns() - start, len(digest)))
        return signature

    def sign_message(self, data: bytes, hash_on: HashOn) -> Signature:
        """Sign ``data`` itself (SHA-256 on the host or on the token): JWT, not handshakes."""
        with self._lock, self.token.device_lock:
            start = time.perf_counter_ns()
            session, key = (self._session, self._key) if self.reuse_session else (None, None)
            if session is None:
                session, key = self._open()
                if self.reuse_session:
                    self._session, self._key = session, key
            assert key is not None
            try:
                signature = session.sign_init_and_sign(key, hash_on, data)
            finally:
                if not self.reuse_session:
                    session.close()
            self.records.append(SignRecord(start, time.perf_counter_ns() - start, len(data)))
        return signature

    def sign_for_openssl(self, digest: bytes) -> bytes | None:
        """:meth:`sign_digest` for a C callback: DER bytes, or None with the error kept."""
        try:
            return self.sign_digest(digest).der
        except BaseException as exc:  # never let an exception unwind through OpenSSL
            self.last_error = exc
            if self._session is not None:  # a failed card session is not reused
                try:
                    self._session.close()
                finally:
                    self._session = None
            self._end_connection()
            return None

    def raise_if_failed(self) -> None:
        """Re-raise (once) the error a signature inside a handshake met."""
        error, self.last_error = self.last_error, None
        if error is None:
            return
        if isinstance(error, SafeLabError):
            raise error
        raise SafeLabError(
            f"the token failed to sign inside the handshake ({error!r})",
            "check the token; see the APDU or module log",
        ) from error

    def close(self) -> None:
        """Close the kept session; a signature asked for afterwards is refused (not reopened)."""
        with self._lock:
            self._closed = True
            self._end_connection()
            if self._session is not None:
                self._session.close()
                self._session = None
