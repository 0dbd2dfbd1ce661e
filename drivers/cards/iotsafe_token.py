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

Token specs (``iotsafe:emulated;profile=paper-sim;speed=0.01``), all attributes optional:

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
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.cards.apdu import GSMA_AID, ISO, PROPRIETARY, Mode, ObjectEntry, ObjectRef
from drivers.cards.atr import EMULATOR_MARK, is_emulator_atr
from drivers.cards.client import SIGN_SESSION, IoTSafeClient
from drivers.cards.emulator import (
    QUIRK_DEFAULTS,
    Delay,
    InProcessTransport,
    IoTSafeApplet,
    load_profile,
    shared_card,
)
from drivers.cards.emulator.store import LAB_PIN
from drivers.cards.errors import CardError
from drivers.cards.trace import TraceEntry, TraceLog
from drivers.cards.transport import Transport
from drivers.errors import KeyNotFoundError, KeyUsageError, PinError, TokenError
from drivers.tokens.base import (
    CURVE_ALIASES,
    CURVES,
    HashOn,
    KeyInfo,
    Pin,
    Signature,
    Token,
    TokenInfo,
    TokenSession,
)
from drivers.tokens.spec import parse_spec

T = TypeVar("T")

DEFAULT_PROFILE = "paper-sim"

_ATTRS = {
    "curve",
    "profile",
    "speed",
    "seed",
    "card",
    "curves",
    "key",
    "object",
    "id",
    "aid",
    "cla",
    "session",
    "channel",
    "find",
    "token-hash",
    "login",
    "reader",
    "port",
    "mode",
    "baud",
    "timeout",
}
TARGETS = ("emulated", "pcsc", "modem")
_EMULATOR_ONLY = ("profile", "speed", "seed", "card", "curves")


@dataclass(frozen=True)
class IoTSafeOptions:
    """What an ``iotsafe:`` spec asks for, checked."""

    target: str = "emulated"
    profile: str = DEFAULT_PROFILE
    speed: float = 1.0
    seed: int | None = None
    card: str = "default"
    curves: tuple[str, ...] = ("secp256r1",)
    key: str | None = None
    aid: bytes = GSMA_AID
    cla_class: int = PROPRIETARY
    session: int = SIGN_SESSION
    logical_channel: bool = True
    find: str = "list"
    token_hash: Mode = Mode.FULL_TEXT
    login: bool = False
    quirks: dict[str, Any] = field(default_factory=dict)
    reader: str | None = None
    port: str | None = None
    modem_mode: str = "csim"
    baud: int = 115200
    timeout_s: float = 10.0

    def uri(self) -> str:
        """The spec again, normalised, without defaults where they add nothing."""
        if self.target == "pcsc":
            parts = ["pcsc"] + ([f"reader={self.reader}"] if self.reader is not None else [])
        elif self.target == "modem":
            parts = ["modem", f"port={self.port}", f"mode={self.modem_mode}"]
            if self.baud != 115200:
                parts.append(f"baud={self.baud}")
            if self.timeout_s != 10.0:
                parts.append(f"timeout={self.timeout_s:g}")
        else:
            parts = [self.target, f"profile={self.profile}", f"speed={self.speed:g}"]
        if self.card != "default":
            parts.append(f"card={self.card}")
        if self.curves != ("secp256r1",):
            parts.append("curves=" + ",".join(self.curves))
        if self.key:
            parts.append(f"key={self.key}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        if self.aid != GSMA_AID:
            parts.append(f"aid={self.aid.hex().upper()}")
        if self.cla_class != PROPRIETARY:
            parts.append("cla=00")
        if self.session != SIGN_SESSION:
            parts.append(f"session={self.session}")
        if not self.logical_channel:
            parts.append("channel=0")
        if self.find != "list":
            parts.append(f"find={self.find}")
        if self.token_hash != Mode.FULL_TEXT:
            parts.append("token-hash=last-block")
        if self.login:
            parts.append("login=verify")
        for name, value in sorted(self.quirks.items()):
            parts.append(f"quirk-{name}={_quirk_text(value)}")
        return "iotsafe:" + ";".join(parts)


def _quirk_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _bad(text: str, problem: str, fix: str) -> TokenError:
    return TokenError(f"token spec {text!r}: {problem}", fix)


def parse_options(text: str) -> IoTSafeOptions:
    """Check an ``iotsafe:`` spec and return its options (errors name the attribute)."""
    spec = parse_spec(text)
    if spec.scheme != "iotsafe":
        raise _bad(text, f"scheme {spec.scheme!r} is not iotsafe", "start the spec with iotsafe:")
    attrs = dict(spec.attrs)
    quirks: dict[str, Any] = {}
    for name in list(attrs):
        if name.startswith("quirk-") or name.startswith("quirk."):
            quirk = name[6:].replace("-", "_")
            if quirk not in QUIRK_DEFAULTS:
                raise _bad(
                    text, f"unknown quirk {quirk!r}", f"use one of {', '.join(QUIRK_DEFAULTS)}"
                )
            quirks[quirk] = _quirk_value(text, quirk, attrs.pop(name))
    unknown = sorted(set(attrs) - _ATTRS)
    if unknown:
        raise _bad(
            text,
            f"unknown attribute {unknown[0]!r}",
            f"use {', '.join(sorted(_ATTRS - {'curve'}))} or quirk-NAME",
        )
    target = attrs.get("curve", "emulated").lower()
    if target not in TARGETS:
        raise _bad(
            text,
            f"unknown card target {target!r}",
            "use iotsafe:emulated, iotsafe:pcsc;reader=NAME or iotsafe:modem;port=DEV",
        )
    if target != "emulated":
        misplaced = [name for name in _EMULATOR_ONLY if name in attrs] + (
            ["quirk-" + next(iter(quirks))] if quirks else []
        )
        if misplaced:
            raise _bad(
                text,
                f"{misplaced[0]} only applies to the emulated card",
                f"drop it from the iotsafe:{target} spec",
            )
    options: dict[str, Any] = {"target": target, "quirks": quirks}
    if "reader" in attrs:
        options["reader"] = attrs["reader"]
    if target == "modem":
        if not attrs.get("port"):
            raise _bad(text, "a modem needs port=", "e.g. iotsafe:modem;port=/dev/ttyUSB2")
        options["port"] = attrs["port"]
        mode = attrs.get("mode", "csim").lower()
        if mode not in ("csim", "cgla"):
            raise _bad(
                text,
                f"mode {mode!r} is not csim or cgla",
                "csim: AT+CSIM (host opens channels); cgla: AT+CCHO/AT+CGLA",
            )
        options["modem_mode"] = mode
        if "baud" in attrs:
            options["baud"] = _int(text, "baud", attrs["baud"], 300, 4_000_000)
        if "timeout" in attrs:
            try:
                timeout = float(attrs["timeout"])
            except ValueError:
                timeout = 0.0
            if not 0.1 <= timeout <= 600:
                raise _bad(
                    text,
                    f"timeout {attrs['timeout']!r} is not 0.1-600 seconds",
                    "slow SIM operations can take seconds: e.g. timeout=10",
                )
            options["timeout_s"] = timeout
    elif "port" in attrs or "mode" in attrs:
        raise _bad(text, "port= and mode= are for iotsafe:modem", "drop them or use modem")
    if "profile" in attrs:
        options["profile"] = attrs["profile"]
    if "speed" in attrs:
        try:
            speed = float(attrs["speed"])
        except ValueError:
            speed = -1.0
        if not 0 <= speed <= 1e6:
            raise _bad(
                text,
                f"speed {attrs['speed']!r} is not a number >= 0",
                "use e.g. speed=1 (real time) or speed=0.01 (100x faster)",
            )
        options["speed"] = speed
    if "seed" in attrs:
        options["seed"] = _int(text, "seed", attrs["seed"], 0, 2**63)
    if "card" in attrs:
        options["card"] = attrs["card"]
    if "curves" in attrs:
        names = []
        for word in filter(None, attrs["curves"].split(",")):
            curve = CURVE_ALIASES.get(word.strip().lower())
            if curve is None:
                raise _bad(text, f"unknown curve {word!r}", "use p256 and/or bp256")
            names.append(curve)
        options["curves"] = tuple(dict.fromkeys(names)) or ("secp256r1",)
    key = attrs.get("key") or attrs.get("object") or attrs.get("id")
    if key:
        options["key"] = key
    if "aid" in attrs:
        try:
            aid = bytes.fromhex(attrs["aid"])
        except ValueError:
            aid = b""
        if not 5 <= len(aid) <= 16:
            raise _bad(
                text,
                f"aid {attrs['aid']!r} is not 5-16 hex bytes",
                f"the GSMA IoT SAFE AID is {GSMA_AID.hex().upper()}",
            )
        options["aid"] = aid
    if "cla" in attrs:
        cla = attrs["cla"].lower().removeprefix("0x")
        if cla not in ("80", "00"):
            raise _bad(
                text,
                f"cla {attrs['cla']!r} is not 80 or 00",
                "cla=80 (proprietary, default) or cla=00 (ISO)",
            )
        options["cla_class"] = PROPRIETARY if cla == "80" else ISO
    if "session" in attrs:
        options["session"] = _int(text, "session", attrs["session"], 0, 255)
    if "channel" in attrs:
        if attrs["channel"] not in ("0", "logical"):
            raise _bad(text, "channel must be 0 or logical", "channel=0 uses the basic channel")
        options["logical_channel"] = attrs["channel"] == "logical"
    if "find" in attrs:
        if attrs["find"] not in ("list", "info"):
            raise _bad(text, "find must be list or info", "find=info asks for one key only")
        options["find"] = attrs["find"]
    if "token-hash" in attrs:
        modes = {"full": Mode.FULL_TEXT, "full-text": Mode.FULL_TEXT, "last-block": Mode.LAST_BLOCK}
        if attrs["token-hash"] not in modes:
            raise _bad(
                text,
                "token-hash must be full or last-block",
                "full: the card hashes everything; last-block: the host hashes whole blocks",
            )
        options["token_hash"] = modes[attrs["token-hash"]]
    if "login" in attrs:
        if attrs["login"] not in ("verify", "none"):
            raise _bad(text, "login must be verify or none", "login=verify checks the SIM PIN")
        options["login"] = attrs["login"] == "verify"
    return IoTSafeOptions(**options)


def _int(text: str, name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise _bad(text, f"{name} {value!r} is not an integer {low}-{high}", f"fix {name}=")
    return number


def _quirk_value(text: str, name: str, value: str) -> Any:
    default = QUIRK_DEFAULTS[name]
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise _bad(text, f"quirk {name} wants true or false", f"quirk-{name}=true")
        return value.lower() in ("true", "1", "yes")
    if isinstance(default, int):
        return _int(text, f"quirk {name}", value, 0, 255)
    return value


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
        return self._traced("find", lambda: self.token.find_key_with(self.client, selector))

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
        *,
        aid: bytes = GSMA_AID,
        cla_class: int = PROPRIETARY,
        sign_session: int = SIGN_SESSION,
        logical_channel: bool = True,
        key_selector: str | None = None,
        find: str = "list",
        token_hash: Mode = Mode.FULL_TEXT,
        login_required: bool = False,
        applet: IoTSafeApplet | None = None,
        trace: TraceLog | None = None,
    ) -> None:
        super().__init__(info, device_identity)
        self.keeps_trace = True
        self.transport = transport
        self.aid = aid
        self.cla_class = cla_class
        self.sign_session = sign_session
        self.logical_channel = logical_channel
        self.key_selector = key_selector
        self.find = find
        self.token_hash = token_hash
        self.login_required = login_required
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
        selector = selector if selector is not None else self.key_selector
        if self.find == "info" and selector:
            entry = client.object_info("private", ObjectRef.parse(selector))
            files: list[ObjectEntry] = []
        else:
            entries = client.object_list()
            files = [e for e in entries if e.kind == "file"]
            keys = [e for e in entries if e.kind == "private"]
            entry = self._choose(keys, selector)
        self._learn(client)
        if not entry.can_sign:
            raise KeyUsageError(
                f"IoT SAFE key {entry.describe()} cannot make ECDSA signatures",
                "choose a key with the sign function (see `safelab tokens`)",
            )
        return _key_info(entry, files)

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


def _key_info(entry: ObjectEntry, files: list[ObjectEntry]) -> KeyInfo:
    has_cert = any(
        f.file_usage == 0x02 and (f.label == entry.label or f.label.startswith(entry.label + "-"))
        for f in files
    )
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
    return IoTSafeToken(
        transport,
        info,
        device_identity=f"iotsafe:emulated:{options.card}",
        aid=options.aid,
        cla_class=options.cla_class,
        sign_session=options.session,
        logical_channel=options.logical_channel,
        key_selector=options.key,
        find=options.find,
        token_hash=options.token_hash,
        login_required=options.login,
        applet=applet,
    )


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
    return IoTSafeToken(
        transport,
        info,
        device_identity=identity,
        aid=options.aid,
        cla_class=options.cla_class,
        sign_session=options.session,
        logical_channel=options.logical_channel,
        key_selector=options.key,
        find=options.find,
        token_hash=options.token_hash,
        login_required=options.login,
    )


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
