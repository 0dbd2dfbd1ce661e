"""An IoT SAFE applet as a :class:`drivers.tokens.base.Token`, over the APDU client.

The phases of the paper's Table 1 map onto IoT.05 commands:

| phase     | APDUs                                                                       |
|-----------|-----------------------------------------------------------------------------|
| open      | MANAGE CHANNEL open, SELECT by AID                                          |
| login     | nothing, unless the spec says ``login=verify`` (ISO VERIFY of the SIM PIN)  |
| find      | GET DATA object list (``find=info``: GET DATA C1 of the named key only)     |
| sign_init | COMPUTE SIGNATURE INIT (final-hash mode, or full text / last block)         |
| sign      | COMPUTE SIGNATURE UPDATE (+ GET RESPONSE on T=0)                            |
| close     | COMPUTE SIGNATURE close if a session is left open, MANAGE CHANNEL close    |

Hash on host (:attr:`HashOn.HOST`) uses final-hash mode (``9E``, the digest); hash on token
uses full-text mode (``9B``, the message), or last-block mode with ``token-hash=last-block``.
Every APDU is in :attr:`IoTSafeToken.trace`, and each session keeps the APDUs of each phase
in :attr:`IoTSafeSession.phase_trace`, so a run can say how many APDUs each phase cost.

Token specs (``iotsafe:emulated;profile=paper-sim;speed=0.01``, parsed and checked by
:mod:`drivers.cards.iotsafe_spec`), all attributes optional:

- the target, first: ``emulated`` (the in-process emulator, default), ``pcsc`` (a card in a
  PC/SC reader: ``reader=NAME|INDEX``, default the first reader), or ``modem`` (a SIM behind a
  modem: ``port=/dev/ttyUSB2``, ``mode=csim|cgla``, ``baud=115200``, ``timeout=10`` seconds);
  a card whose ATR carries the emulator's mark is labelled emulated whatever the link;
- ``profile=NAME|PATH``: card profile (default ``paper-sim``); ``speed=F``: time factor;
  ``seed=N``: reproducible delays; ``card=NAME``: which emulated card (keys shared by name);
  ``curves=p256,bp256``: keys to provision; ``quirk-NAME=VALUE``: override a profile quirk;
- ``key=01|LABEL`` (also ``object=``/``id=``): the signing key (default: the first one);
- ``aid=HEX``; ``cla=80|00`` class tried first; ``session=1|0``; ``channel=0`` to stay on
  the basic channel; ``find=list|info``; ``token-hash=full|last-block``; ``login=verify``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.cards.apdu import GSMA_AID, Mode, ObjectEntry, ObjectRef
from drivers.cards.atr import EMULATOR_MARK, is_emulator_atr
from drivers.cards.client import IoTSafeClient
from drivers.cards.emulator import (
    Delay,
    InProcessTransport,
    IoTSafeApplet,
    load_profile,
    shared_card,
)
from drivers.cards.emulator.store import LAB_PIN
from drivers.cards.errors import CardError
from drivers.cards.iotsafe_spec import DEFAULT_PROFILE, TARGETS, IoTSafeOptions, parse_options
from drivers.cards.trace import TraceEntry, TraceLog
from drivers.cards.transport import Transport
from drivers.errors import KeyNotFoundError, KeyUsageError, PinError
from drivers.tokens.base import (
    CURVES,
    HashOn,
    KeyInfo,
    Pin,
    Signature,
    Token,
    TokenInfo,
    TokenSession,
)

T = TypeVar("T")

__all__ = [
    "DEFAULT_PROFILE",
    "TARGETS",
    "IoTSafeOptions",
    "IoTSafeSession",
    "IoTSafeToken",
    "card_token",
    "emulated_token",
    "open_iotsafe",
    "parse_options",
]


# ------------------------------------------------------------------------------- token


class IoTSafeSession(TokenSession):
    """An open logical channel with the applet selected; the paper's phases are APDUs."""

    token: IoTSafeToken

    def __init__(self, token: IoTSafeToken, client: IoTSafeClient) -> None:
        super().__init__(token)
        self.client = client
        self.phase_trace: dict[str, tuple[TraceEntry, ...]] = {}
        """The APDUs of each phase of this session (``open``, ``login``, ``find``...)."""
        self._key_ref: ObjectRef | None = None
        self._mode = Mode.FINAL_HASH
        self._listing: dict[str | None, tuple[KeyInfo, list[ObjectEntry] | None]] = {}
        """This session's enumeration of the applet's objects: key and files per selector."""

    def _traced(self, phase: str, call: Callable[[], T]) -> T:
        mark = self.client.trace.mark()
        try:
            return call()
        finally:
            self.phase_trace[phase] = self.client.trace.since(mark)

    def _login(self, pin: Pin | None) -> None:
        if not self.token.login_required:
            return
        if pin is None:
            raise PinError("this IoT SAFE card needs its SIM PIN", "give the PIN when asked")
        self._traced("login", lambda: self.client.verify_pin(pin.reveal().encode()))

    def _find_key(self, selector: str | None) -> KeyInfo:
        listed = self._listing.get(selector)
        if listed is not None:  # this session enumerated the applet's objects already
            return listed[0]
        key = self._traced("find", lambda: self._enumerate(selector)[0])
        return key

    def _enumerate(self, selector: str | None) -> tuple[KeyInfo, list[ObjectEntry] | None]:
        found = self.token.find_key_and_files(self.client, selector)
        self._listing[selector] = found
        return found

    def _read_certificate(self, selector: str | None) -> bytes | None:
        """READ FILE of the key's certificate file (usage 02, labelled after the key).

        The session enumerates the applet's objects once (GET DATA object list), as a
        PKCS#11 library does for C_FindObjects; a later :meth:`find_key` in this session uses
        that enumeration. The certificate's value is read from the card (C_GetAttributeValue
        CKA_VALUE), never from a cache.
        """

        def read() -> bytes | None:
            key, files = self._listing.get(selector) or self._enumerate(selector)
            entry = key.ref if isinstance(key.ref, ObjectEntry) else None
            if files is None:  # found by ID alone (find=info): list the files now
                files = [e for e in self.client.object_list() if e.kind == "file"]
            certs = [
                f
                for f in files
                if entry is not None and f.file_usage == 0x02 and _labelled_after(f, entry)
            ]
            if not certs:
                return None
            return self.client.read_file(certs[0].ref, certs[0].file_size)

        return self._traced("cert", read)

    def _sign_init(self, key: KeyInfo, hash_on: HashOn) -> None:
        entry = key.ref if isinstance(key.ref, ObjectEntry) else None
        if entry is None:
            raise KeyUsageError(
                f"key {key.label!r} was not found on this IoT SAFE card",
                "use a key returned by find_key() of this token",
            )
        self._key_ref = entry.ref
        self._mode = Mode.FINAL_HASH if hash_on is HashOn.HOST else self.token.token_hash
        ref = self._key_ref
        self._traced("sign_init", lambda: self.client.sign_init(ref, self._mode))

    def _sign(self, data: bytes, hash_on: HashOn) -> Signature:
        def sign() -> bytes:
            if self._mode == Mode.FINAL_HASH:
                return self.client.sign_final_hash(hashlib.sha256(data).digest())
            if self._mode == Mode.LAST_BLOCK:
                return self.client.sign_last_block(data)
            return self.client.sign_full_text(data)

        return Signature.from_raw(self._traced("sign", sign))

    def _sign_digest(self, digest: bytes) -> Signature:
        """COMPUTE SIGNATURE UPDATE in final-hash mode: the host's digest, as TLS hands it."""
        if self._mode != Mode.FINAL_HASH:
            raise KeyUsageError(
                "a digest can only be signed in final-hash mode",
                "call sign_init with HashOn.HOST before sign_digest",
            )
        return Signature.from_raw(self._traced("sign", lambda: self.client.sign_final_hash(digest)))

    def _close(self) -> None:
        self._traced("close", self.client.close)
        self.token._learn(self.client)


class IoTSafeToken(Token):
    """A GSMA IoT SAFE applet reached through a :class:`Transport`.

    ``applet`` is set for the emulator (so tests and the console can inspect its sampled
    delays); :attr:`trace` holds every APDU of every session of this token.
    """

    def __init__(
        self,
        transport: Transport,
        info: TokenInfo,
        device_identity: str,
        options: IoTSafeOptions,
        *,
        applet: IoTSafeApplet | None = None,
        trace: TraceLog | None = None,
    ) -> None:
        super().__init__(info, device_identity)
        self.keeps_trace = True
        self.transport = transport
        self.options = options
        """The spec this token was opened with (the CLA class and session may be re-learned)."""
        self.aid = options.aid
        self.cla_class = options.cla_class
        self.sign_session = options.session
        self.logical_channel = options.logical_channel
        self.key_selector = options.key
        self.find = options.find
        self.token_hash = options.token_hash
        self.login_required = options.login
        self.applet = applet
        self.trace = trace if trace is not None else TraceLog()
        self._public_keys: dict[bytes, ec.EllipticCurvePublicKey] = {}
        self._public_by_selector: dict[str | None, ec.EllipticCurvePublicKey] = {}
        self._certificates: dict[bytes, x509.Certificate | None] = {}
        self._closed = False

    @property
    def needs_login(self) -> bool:
        return self.login_required

    def client(self) -> IoTSafeClient:
        """A new client on this token's link, sharing its trace and learned quirks."""
        return IoTSafeClient(
            self.transport,
            aid=self.aid,
            cla_class=self.cla_class,
            logical_channel=self.logical_channel,
            sign_session=self.sign_session,
            trace=self.trace,
        )

    def _learn(self, client: IoTSafeClient) -> None:
        """Keep the CLA class and session number that worked, for the next sessions."""
        self.cla_class = client.cla_class
        self.sign_session = client.sign_session

    def _open(self) -> IoTSafeSession:
        client = self.client()
        session = IoTSafeSession(self, client)
        session._traced("open", client.open)
        return session

    def last_trace(self, count: int = 20) -> tuple[TraceEntry, ...]:
        """The last ``count`` APDU exchanges on this token."""
        return self.trace.last(count)

    def pin_status(self) -> str:
        if not self.login_required:
            return "not applicable"
        tries = self._with_client(lambda client: client.pin_tries_left())
        if tries is None:
            return "ok"
        return {0: "locked", 1: "final try"}.get(tries, f"{tries} tries left")

    def _with_client(self, call: Callable[[IoTSafeClient], T]) -> T:
        """Run ``call`` on a freshly opened channel, closed afterwards (not timed)."""
        with self.device_lock:
            client = self.client()
            try:
                client.open()
                return call(client)
            finally:
                client.close()
                self._learn(client)

    # --------------------------------------------------------------------- keys

    def find_key_with(self, client: IoTSafeClient, selector: str | None) -> KeyInfo:
        """The signing key ``selector`` names (label or hex ID), or the first signing key."""
        return self.find_key_and_files(client, selector)[0]

    def find_key_and_files(
        self, client: IoTSafeClient, selector: str | None
    ) -> tuple[KeyInfo, list[ObjectEntry] | None]:
        """:meth:`find_key_with`, plus the file objects the listing showed (``None`` when the
        key was found by GET DATA on its ID alone, ``find=info``)."""
        selector = selector if selector is not None else self.key_selector
        listed: list[ObjectEntry] | None = None
        if self.find == "info" and selector:
            entry = client.object_info("private", ObjectRef.parse(selector))
        else:
            entries = client.object_list()
            listed = [e for e in entries if e.kind == "file"]
            keys = [e for e in entries if e.kind == "private"]
            entry = self._choose(keys, selector)
        self._learn(client)
        if not entry.can_sign:
            raise KeyUsageError(
                f"IoT SAFE key {entry.describe()} cannot make ECDSA signatures",
                "choose a key with the sign function (see `safelab tokens`)",
            )
        return _key_info(entry, listed or []), listed

    @staticmethod
    def _choose(keys: list[ObjectEntry], selector: str | None) -> ObjectEntry:
        if selector is None:
            signing = [e for e in keys if e.can_sign]
            if signing:
                return signing[0]
            raise KeyNotFoundError(
                "the IoT SAFE card has no key that can sign",
                "provision a signing key (key type P-256 with the sign function)",
            )
        try:
            wanted = ObjectRef.parse(selector)
        except CardError:
            wanted = ObjectRef(label=selector)
        for entry in keys:
            if (wanted.id is not None and entry.id == wanted.id) or entry.label == selector:
                return entry
        shown = ", ".join(f"{e.id.hex().upper()} {e.label!r}" for e in keys) or "none"
        raise KeyNotFoundError(
            f"no private key {selector!r} on the IoT SAFE card (keys: {shown})",
            "name a key by label or hex ID, e.g. key=01",
        )

    def keys(self) -> list[KeyInfo]:
        entries = self._with_client(lambda client: client.object_list())
        files = [e for e in entries if e.kind == "file"]
        infos = [_key_info(e, files) for e in entries if e.kind == "private"]
        return sorted(infos, key=lambda k: not k.can_sign)

    def _key_entry(self, selector: str | None) -> KeyInfo:
        return self._with_client(lambda client: self.find_key_with(client, selector))

    def public_key(self, selector: str | None = None) -> ec.EllipticCurvePublicKey:
        """READ PUBLIC KEY of the public object paired with the key (same ID, else label).

        Kept per selector after the first read: handshakes ask for it every connection, and
        on a SIM each lookup would cost seconds of APDUs.
        """
        cached = self._public_by_selector.get(selector)
        if cached is not None:
            return cached
        public = self._read_public_key(selector)
        self._public_by_selector[selector] = public
        return public

    def _read_public_key(self, selector: str | None) -> ec.EllipticCurvePublicKey:
        key = self._key_entry(selector)
        entry: ObjectEntry = key.ref
        if entry.id in self._public_keys:
            return self._public_keys[entry.id]

        def read(client: IoTSafeClient) -> bytes:
            publics = [e for e in client.object_list() if e.kind == "public"]
            match = next((e for e in publics if e.id == entry.id), None) or next(
                (e for e in publics if e.label == entry.label), None
            )
            if match is None:
                raise KeyNotFoundError(
                    f"the IoT SAFE card has no public key object for key {entry.describe()}",
                    "provision the public key with the same ID or label",
                )
            return client.read_public_key(match.ref)

        point = self._with_client(read)
        curve = CURVES.get(key.curve, ec.SECP256R1())
        public = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        self._public_keys[entry.id] = public
        return public

    def certificate(self, selector: str | None = None) -> x509.Certificate | None:
        """The X.509 certificate file whose public key is the key's (read with READ FILE)."""
        key = self._key_entry(selector)
        entry: ObjectEntry = key.ref
        if entry.id in self._certificates:
            return self._certificates[entry.id]
        public = self.public_key(selector)

        def read(client: IoTSafeClient) -> x509.Certificate | None:
            files = [e for e in client.object_list() if e.kind == "file" and e.file_usage == 0x02]
            files.sort(key=lambda e: not e.label.startswith(entry.label))
            for file in files:
                with contextlib.suppress(ValueError):
                    cert = x509.load_der_x509_certificate(
                        client.read_file(file.ref, file.file_size)
                    )
                    if cert.public_key() == public:
                        return cert
            return None

        cert = self._with_client(read)
        self._certificates[entry.id] = cert
        return cert

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.transport.close()


def _labelled_after(file: ObjectEntry, key: ObjectEntry) -> bool:
    """A file named for the key (``client`` → ``client`` or ``client-cert``)."""
    return file.label == key.label or file.label.startswith(key.label + "-")


def _key_info(entry: ObjectEntry, files: list[ObjectEntry]) -> KeyInfo:
    has_cert = any(f.file_usage == 0x02 and _labelled_after(f, entry) for f in files)
    return KeyInfo(
        label=entry.label,
        key_id=entry.id.hex().upper(),
        curve=entry.curve,
        can_sign=entry.can_sign,
        has_certificate=has_cert,
        ref=entry,
    )


# ------------------------------------------------------------------------------- factory


def emulated_token(
    options: IoTSafeOptions | None = None, *, delay: Delay | None = None
) -> IoTSafeToken:
    """An :class:`IoTSafeToken` on the in-process emulator, as ``options`` describe.

    ``delay`` replaces the emulator's precise waiting (e.g. a :class:`RecordingDelay` to read
    modelled times without waiting).
    """
    options = options or IoTSafeOptions()
    profile = load_profile(options.profile)
    if options.quirks:
        profile = profile.with_quirks(**options.quirks)
    store = shared_card(options.card, options.curves, pin=LAB_PIN if options.login else None)
    applet = IoTSafeApplet(
        store,
        profile,
        speed=options.speed,
        seed=options.seed,
        delay=delay,
        aid=GSMA_AID,
        hosted_aids=(options.aid,),  # aid=HEX: the emulated card hosts the AID asked for
    )
    transport = InProcessTransport(applet)
    info = TokenInfo(
        kind="iotsafe",
        uri=options.uri(),
        label=f"IoT SAFE emulated card {options.card!r} ({profile.name}, speed {options.speed:g})",
        manufacturer="SAFE Lab",
        model=f"IoT SAFE applet emulator, profile {profile.name}",
        serial=options.card,
        module=transport.name,
        emulated=True,
        flags=(f"profile={profile.name}", f"speed={options.speed:g}"),
    )
    return IoTSafeToken(transport, info, f"iotsafe:emulated:{options.card}", options, applet=applet)


def card_token(options: IoTSafeOptions) -> IoTSafeToken:
    """An :class:`IoTSafeToken` on a real link: a PC/SC reader or a modem."""
    transport: Transport
    atr = b""
    if options.target == "pcsc":
        from drivers.cards.pcsc import PcscTransport

        transport = PcscTransport(options.reader)
        atr = transport.atr
        where = f"reader {transport.name!r}"
        identity = f"iotsafe:pcsc:{transport.name}"
        uri = dataclasses.replace(options, reader=transport.name).uri()
    else:
        from drivers.cards.modem import ModemTransport

        transport = ModemTransport(
            options.port or "",
            mode=options.modem_mode,
            baudrate=options.baud,
            command_timeout_s=options.timeout_s,
        )
        where = f"modem {options.port} ({options.modem_mode})"
        identity = f"iotsafe:modem:{options.port}"
        uri = options.uri()
    emulated = is_emulator_atr(atr)
    if options.target == "modem":
        emulated = _modem_says_emulated(transport)
    info = TokenInfo(
        kind="iotsafe",
        uri=uri,
        label=f"IoT SAFE card in {where}" + (" [emulated card]" if emulated else ""),
        manufacturer="SAFE Lab emulator" if emulated else "",
        model="IoT SAFE applet",
        serial=atr.hex().upper(),
        module=transport.name,
        emulated=emulated,
        flags=(f"ATR={atr.hex().upper()}",) if atr else (),
    )
    return IoTSafeToken(transport, info, identity, options)


def _modem_says_emulated(transport: Transport) -> bool:
    """A modem gives no ATR through AT+CSIM; SAFE Lab's pty modem says so in ATI."""
    command = getattr(transport, "command", None)
    if command is None:
        return False
    try:
        return any(EMULATOR_MARK.decode() in line for line in command("ATI"))
    except CardError:
        return False


def open_iotsafe(text: str) -> Token:
    """The token factory for ``iotsafe:`` specs (``register_scheme("iotsafe", open_iotsafe)``)."""
    options = parse_options(text)
    if options.target == "emulated":
        return emulated_token(options)
    return card_token(options)
