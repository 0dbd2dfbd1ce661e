"""IoT SAFE (GSMA IoT.05) APDUs: byte-exact command builders and response parsers.

Every builder returns a :class:`Command` whose :meth:`Command.to_bytes` is exactly what the
reference (``research/iotsafe-apdu.md`` §1) shows the working host implementations send, e.g.
the hash-on-host signature::

    81 2A 00 01 0D 84 01 01 A1 01 03 91 02 00 01 92 01 04     COMPUTE SIGNATURE INIT
    81 2B 80 01 22 9E 20 <32-byte SHA-256>                    COMPUTE SIGNATURE UPDATE
    01 C0 00 00 43                                            GET RESPONSE (after 6143)
    81 2A 01 01                                               close the session

The builders do not pick the CLA class: they take the CLA the client computed with
:func:`cla_for`, because applets disagree on ``0x8n`` versus ``0x0n`` (quirk 1). Parsers accept
every encoding the reference saw in the field (quirks 2 and 3): ``33 LL``, ``33 81 LL``,
``33 00 LL`` and a DER signature inside tag ``33``. Only short APDUs are built (Lc ≤ 255),
which is what SIMs behind modems accept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from drivers.cards import tlv
from drivers.cards.errors import CommandFormatError, ResponseFormatError, TlvError

GSMA_AID = bytes.fromhex("A0000005590010")
"""The standard IoT SAFE applet AID (RID A000000559 = GSMA)."""

THALES_AID = bytes.fromhex("A00000003053F12401770101495341")
"""The Thales "MVP" applet's AID (tail = ASCII ``ISA``)."""

ORANGE_LIVE_OBJECTS_AID = bytes.fromhex("A0000002480400")
"""Orange Live Objects' custom AID."""

ISO = 0x00
"""ISO (interindustry) class: CLA ``0x0n``."""
PROPRIETARY = 0x80
"""Proprietary class: CLA ``0x8n``, what wolfSSL and at_talk send."""

HASH_SHA256 = 0x0001
"""Tag ``91`` value for SHA-256 (2 bytes in commands)."""
SIG_ECDSA = 0x04
"""Tag ``92`` value for ECDSA."""

FIELD_BYTES = 32
"""Coordinate size of both IoT SAFE curves (P-256, brainpoolP256r1)."""


class Ins(IntEnum):
    """Instruction bytes (Orange, wolfSSL and Thales agree) and the ISO ones around them."""

    MANAGE_CHANNEL = 0x70
    SELECT = 0xA4
    GET_RESPONSE = 0xC0
    VERIFY_PIN = 0x20
    COMPUTE_SIGNATURE_INIT = 0x2A
    COMPUTE_SIGNATURE_UPDATE = 0x2B
    VERIFY_SIGNATURE_INIT = 0x2C
    VERIFY_SIGNATURE_UPDATE = 0x2D
    PUT_PUBLIC_KEY_INIT = 0x24
    PUT_PUBLIC_KEY_UPDATE = 0xD8
    GENERATE_KEY_PAIR = 0xB9
    READ_PUBLIC_KEY = 0xCD
    COMPUTE_DH = 0x46
    COMPUTE_PRF = 0x48
    COMPUTE_HKDF = 0x4A
    GET_RANDOM = 0x84
    READ_FILE = 0xB0
    GET_DATA = 0xCB


INS_NAMES: dict[int, str] = {ins.value: ins.name.replace("_", " ") for ins in Ins}


class Mode(IntEnum):
    """COMPUTE/VERIFY SIGNATURE mode of operation (tag ``A1``)."""

    FULL_TEXT = 0x01
    """The applet hashes the data (tag ``9B``, chunked)."""
    LAST_BLOCK = 0x02
    """The host hashed all but the last block (tags ``9A``, ``9C``, ``9D``)."""
    FINAL_HASH = 0x03
    """The host sends the digest (tag ``9E``): hash on host."""


class GetDataP1(IntEnum):
    """GET DATA's P1: what to read."""

    APPLICATION = 0x00
    OBJECT_LIST = 0x01
    PRIVATE_KEY = 0xC1
    PUBLIC_KEY = 0xC2
    FILE = 0xC3
    SECRET_KEY = 0xC4


# ------------------------------------------------------------------------------- CLA byte


def cla_for(channel: int, cla_class: int = PROPRIETARY) -> int:
    """The CLA byte for ``channel`` (0-19) in ``cla_class`` (:data:`ISO` or :data:`PROPRIETARY`).

    Channels 0-3 sit in bits 1-2 (``0x0n``/``0x8n``); 4-19 use the further-interindustry
    coding ``0x40 | (ch-4)`` (``0xC0 | (ch-4)`` proprietary), per ISO 7816-4.
    """
    if not 0 <= channel <= 19:
        raise CommandFormatError(f"logical channel {channel} is not 0-19", "use a channel 0-19")
    base = cla_class & 0x80
    if channel <= 3:
        return base | channel
    return base | 0x40 | (channel - 4)


def channel_of(cla: int) -> int:
    """The logical channel a CLA byte addresses."""
    if cla & 0x40:
        return 4 + (cla & 0x0F)
    return cla & 0x03


def class_of(cla: int) -> int:
    """:data:`PROPRIETARY` or :data:`ISO` for a CLA byte."""
    return cla & 0x80


# ------------------------------------------------------------------------------- APDU shapes


@dataclass(frozen=True)
class Command:
    """A command APDU; ``le=None`` means no Le byte, ``le=0`` means Le ``00`` (256).

    ``extended``: ISO 7816-4 extended length (Lc and Le on 2 bytes, ``le=0`` = 65536), which
    only cards with the ``extended_length`` quirk accept (others answer ``6700``).
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    def to_bytes(self) -> bytes:
        """ISO 7816-4 encoding: header, [Lc data], [Le] (short, or extended if asked)."""
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise CommandFormatError(f"{name.upper()} {value:#x} is not one byte", _BUG)
        if self.extended:
            return self._extended_bytes()
        if len(self.data) > 0xFF:
            raise CommandFormatError(
                f"{self.name} data of {len(self.data)} bytes exceeds a short APDU (255)",
                "send the data in several UPDATE commands",
            )
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            if not 0 <= self.le <= 0xFF:
                raise CommandFormatError(f"Le {self.le} is not 0-255", _BUG)
            out += bytes([self.le])
        return out

    def _extended_bytes(self) -> bytes:
        if len(self.data) > 0xFFFF or (self.le is not None and not 0 <= self.le <= 0xFFFF):
            raise CommandFormatError("an extended APDU carries at most 65535 bytes", _BUG)
        out = bytes([self.cla, self.ins, self.p1, self.p2, 0x00])
        if self.data:
            out += len(self.data).to_bytes(2, "big") + self.data
        if self.le is not None:
            out += self.le.to_bytes(2, "big")
        return out

    @property
    def name(self) -> str:
        """Name of the instruction, e.g. ``COMPUTE SIGNATURE UPDATE``."""
        return INS_NAMES.get(self.ins, f"INS {self.ins:02X}")

    @property
    def channel(self) -> int:
        return channel_of(self.cla)

    def with_le(self, le: int | None) -> Command:
        return replace(self, le=le)

    def with_cla(self, cla: int) -> Command:
        return replace(self, cla=cla)


_BUG = "this is a bug in SAFE Lab; please report it with the APDU trace"


def parse_command(raw: bytes) -> Command:
    """Split a short command APDU into its fields (cases 1-4)."""
    raw = bytes(raw)
    if len(raw) < 4:
        raise CommandFormatError(f"a command APDU has at least 4 bytes, got {len(raw)}", _BUG)
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:
        return Command(cla, ins, p1, p2)
    if len(body) == 1:
        return Command(cla, ins, p1, p2, le=body[0])
    lc = body[0]
    if lc == 0:
        return _parse_extended(cla, ins, p1, p2, body)
    if len(body) == 1 + lc:
        return Command(cla, ins, p1, p2, data=body[1:])
    if len(body) == 2 + lc:
        return Command(cla, ins, p1, p2, data=body[1:-1], le=body[-1])
    raise CommandFormatError(
        f"Lc {lc} does not match the {len(body) - 1} bytes after it", "check the APDU length"
    )


def _parse_extended(cla: int, ins: int, p1: int, p2: int, body: bytes) -> Command:
    """Cases 2E-4E: ``00`` then a 2-byte Lc (with data) and/or a 2-byte Le."""
    if len(body) == 3:
        return Command(cla, ins, p1, p2, le=int.from_bytes(body[1:3], "big"), extended=True)
    lc = int.from_bytes(body[1:3], "big")
    rest = body[3:]
    if lc and len(rest) == lc:
        return Command(cla, ins, p1, p2, data=rest, extended=True)
    if lc and len(rest) == lc + 2:
        le = int.from_bytes(rest[-2:], "big")
        return Command(cla, ins, p1, p2, data=rest[:-2], le=le, extended=True)
    raise CommandFormatError(
        f"extended Lc {lc} does not match the {len(rest)} bytes after it",
        "check the APDU length",
    )


@dataclass(frozen=True)
class Response:
    """A response APDU: data and the status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")


def parse_response(raw: bytes) -> Response:
    """Split a response into data and SW; fewer than 2 bytes is a transport problem."""
    raw = bytes(raw)
    if len(raw) < 2:
        raise ResponseFormatError(
            f"a response APDU needs at least the 2 status bytes, got {len(raw)} byte(s)",
            "the link to the card lost bytes; check the reader or modem",
        )
    return Response(raw[:-2], int.from_bytes(raw[-2:], "big"))


# ------------------------------------------------------------------------------- object refs


_REF_TAGS: dict[str, tuple[int, int]] = {
    "private": (0x84, 0x74),
    "public": (0x85, 0x75),
    "file": (0x83, 0x73),
    "secret": (0x86, 0x76),
}


@dataclass(frozen=True)
class ObjectRef:
    """A key or file named by ID (bytes) or by label (text), as IoT.05 allows both."""

    id: bytes | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if (self.id is None) == (self.label is None):
            raise CommandFormatError("name an object by ID or by label, not both", _BUG)
        if self.id is not None and not 1 <= len(self.id) <= 20:
            raise CommandFormatError(
                f"object ID {self.id.hex()} has {len(self.id)} bytes, IoT SAFE allows 1-20",
                "use a shorter ID",
            )
        if self.label is not None and not 1 <= len(self.label.encode()) <= 60:
            raise CommandFormatError(
                f"label {self.label!r} is not 1-60 bytes", "use a label of at most 60 bytes"
            )

    @classmethod
    def of(cls, value: bytes | int | str | ObjectRef) -> ObjectRef:
        """An ID from bytes/int, a label from text (see :meth:`parse` for hex text)."""
        if isinstance(value, ObjectRef):
            return value
        if isinstance(value, int):
            return cls(id=bytes([value]))
        if isinstance(value, bytes):
            return cls(id=value)
        return cls(label=value)

    @classmethod
    def parse(cls, text: str) -> ObjectRef:
        """``01`` or ``0x01`` → ID; anything else → label (``id:``/``label:`` prefixes force)."""
        text = text.strip()
        if text.startswith("label:"):
            return cls(label=text[6:])
        if text.startswith("id:"):
            text = text[3:]
        elif not _is_hex(text):
            return cls(label=text)
        hex_text = text[2:] if text.lower().startswith("0x") else text
        try:
            return cls(id=bytes.fromhex(hex_text))
        except ValueError:
            raise CommandFormatError(
                f"{text!r} is not a hex object ID", "give an even number of hex digits, e.g. 01"
            ) from None

    def tlv(self, kind: str) -> bytes:
        """The TLV naming this object as a ``kind`` (private, public, file, secret)."""
        id_tag, label_tag = _REF_TAGS[kind]
        if self.id is not None:
            return tlv.encode(id_tag, self.id)
        return tlv.encode(label_tag, (self.label or "").encode())

    def __str__(self) -> str:
        return self.id.hex().upper() if self.id is not None else repr(self.label)


def _is_hex(text: str) -> bool:
    body = text[2:] if text.lower().startswith("0x") else text
    return bool(body) and len(body) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in body)


# ------------------------------------------------------------------------------- builders


def manage_channel_open() -> Command:
    """``00 70 00 00 01``: open a logical channel; the card answers ``<ch> 90 00``."""
    return Command(0x00, Ins.MANAGE_CHANNEL, 0x00, 0x00, le=0x01)


def manage_channel_close(channel: int, *, le: int | None = None) -> Command:
    """``00 70 80 <ch>``: close a channel (``le=0`` gives the 5-byte T=0 form ``.. 00``)."""
    if not 1 <= channel <= 19:
        raise CommandFormatError(f"channel {channel} cannot be closed", "channels 1-19 only")
    return Command(0x00, Ins.MANAGE_CHANNEL, 0x80, channel, le=le)


def select(channel: int, aid: bytes = GSMA_AID, *, le: int | None = None) -> Command:
    """``0<ch> A4 04 00 <Lc> <AID>``: SELECT by AID on a channel (ISO class, as Orange)."""
    if not 5 <= len(aid) <= 16:
        raise CommandFormatError(f"AID {aid.hex()} is not 5-16 bytes", "check the AID")
    return Command(cla_for(channel, ISO), Ins.SELECT, 0x04, 0x00, aid, le)


def get_response(channel: int, length: int, cla_class: int = ISO) -> Command:
    """``0<ch> C0 00 00 <xx>``: fetch response bytes after ``61xx``."""
    return Command(cla_for(channel, cla_class), Ins.GET_RESPONSE, 0x00, 0x00, le=length & 0xFF)


def verify_pin(channel: int, pin: bytes, reference: int = 0x01) -> Command:
    """ISO VERIFY (``0<ch> 20 00 01 08 <PIN padded FF>``), for SIMs that want a PIN first.

    With an empty ``pin`` it asks for the tries left (``63Cx``) without spending one.
    """
    data = pin.ljust(8, b"\xff") if pin else b""
    if len(data) > 8:
        raise CommandFormatError("a SIM PIN has at most 8 digits", "check the PIN")
    return Command(cla_for(channel, ISO), Ins.VERIFY_PIN, 0x00, reference, data)


def get_data(cla: int, p1: GetDataP1, ref: ObjectRef | None = None, *, le: int = 0x00) -> Command:
    """GET DATA: application info (``P1 00``), object list (``01``), object info (``C1``-``C4``)."""
    data = b""
    if p1 in _INFO_KINDS:
        if ref is None:
            raise CommandFormatError("GET DATA of an object needs the object's ID", _BUG)
        data = ref.tlv(_INFO_KINDS[p1])
    return Command(cla, Ins.GET_DATA, p1, 0x00, data, le)


_INFO_KINDS = {
    GetDataP1.PRIVATE_KEY: "private",
    GetDataP1.PUBLIC_KEY: "public",
    GetDataP1.FILE: "file",
    GetDataP1.SECRET_KEY: "secret",
}


def read_file(cla: int, file: ObjectRef, offset: int, length: int) -> Command:
    """READ FILE: ``B0 <offset hi> <offset lo> | 83 <fid>``, Le = chunk length (1-256)."""
    if not 0 <= offset <= 0xFFFF:
        raise CommandFormatError(f"file offset {offset} is not 0-65535", _BUG)
    if not 1 <= length <= 256:
        raise CommandFormatError(f"READ FILE chunk {length} is not 1-256 bytes", _BUG)
    return Command(cla, Ins.READ_FILE, offset >> 8, offset & 0xFF, file.tlv("file"), length & 0xFF)


def compute_signature_init(
    cla: int,
    session: int,
    key: ObjectRef,
    mode: Mode = Mode.FINAL_HASH,
    *,
    hash_algorithm: int = HASH_SHA256,
    signature_algorithm: int = SIG_ECDSA,
) -> Command:
    """COMPUTE SIGNATURE INIT (open): ``2A 00 <sess> | 84 id A1 01 mode 91 02 0001 92 01 04``."""
    data = key.tlv("private") + _signature_params(mode, hash_algorithm, signature_algorithm)
    return Command(cla, Ins.COMPUTE_SIGNATURE_INIT, 0x00, _session(session), data)


def _signature_params(mode: Mode, hash_algorithm: int, signature_algorithm: int) -> bytes:
    """The ``A1`` mode, ``91`` hash and ``92`` signature algorithm TLVs of both INITs."""
    return (
        tlv.encode(0xA1, bytes([mode]))
        + tlv.encode(0x91, hash_algorithm.to_bytes(2, "big"))
        + tlv.encode(0x92, bytes([signature_algorithm]))
    )


def compute_signature_close(cla: int, session: int) -> Command:
    """COMPUTE SIGNATURE INIT (close): ``2A 01 <sess>``."""
    return Command(cla, Ins.COMPUTE_SIGNATURE_INIT, 0x01, _session(session))


def compute_signature_update_final_hash(cla: int, session: int, digest: bytes) -> Command:
    """COMPUTE SIGNATURE UPDATE, final-hash mode: ``2B 80 <sess> | 9E 20 <digest>``."""
    if not 20 <= len(digest) <= 64:
        raise CommandFormatError(f"a digest of {len(digest)} bytes is not a hash", _BUG)
    return Command(
        cla, Ins.COMPUTE_SIGNATURE_UPDATE, 0x80, _session(session), tlv.encode(0x9E, digest)
    )


FULL_TEXT_CHUNK = 0xF0
"""Message bytes per full-text UPDATE (fits Lc ≤ 255 with the ``9B 81 LL`` header)."""


def compute_signature_update_full_text(
    cla: int, session: int, message: bytes, *, chunk: int = FULL_TEXT_CHUNK
) -> list[Command]:
    """COMPUTE SIGNATURE UPDATE, full-text mode: ``2B 00 <sess> | 9B ..`` chunks, last ``2B 80``.

    An empty message is one ``2B 80`` with an empty ``9B``.
    """
    if not 1 <= chunk <= 0xFC:
        raise CommandFormatError(f"full-text chunk {chunk} is not 1-252 bytes", _BUG)
    pieces = [message[i : i + chunk] for i in range(0, len(message), chunk)] or [b""]
    commands = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        commands.append(
            Command(
                cla,
                Ins.COMPUTE_SIGNATURE_UPDATE,
                0x80 if last else 0x00,
                _session(session),
                tlv.encode(0x9B, piece),
            )
        )
    return commands


def compute_signature_update_last_block(
    cla: int, session: int, last_block: bytes, intermediate_hash: bytes, hashed_bytes: int
) -> Command:
    """COMPUTE SIGNATURE UPDATE, last-block mode: ``2B 80 <sess> | 9A .. 9C .. 9D 04 ..``."""
    if len(last_block) > 0x80:
        raise CommandFormatError(f"last block of {len(last_block)} bytes exceeds 128", _BUG)
    if not 0x20 <= len(intermediate_hash) <= 0x40:
        raise CommandFormatError("intermediate hash must be 32-64 bytes", _BUG)
    data = (
        tlv.encode(0x9A, last_block)
        + tlv.encode(0x9C, intermediate_hash)
        + tlv.encode(0x9D, hashed_bytes.to_bytes(4, "big"))
    )
    return Command(cla, Ins.COMPUTE_SIGNATURE_UPDATE, 0x80, _session(session), data)


def verify_signature_init(
    cla: int,
    session: int,
    key: ObjectRef,
    mode: Mode = Mode.FINAL_HASH,
    *,
    hash_algorithm: int = HASH_SHA256,
    signature_algorithm: int = SIG_ECDSA,
) -> Command:
    """VERIFY SIGNATURE INIT (open): ``2C 00 <sess> | 85 id A1 .. 91 .. 92 ..``."""
    data = key.tlv("public") + _signature_params(mode, hash_algorithm, signature_algorithm)
    return Command(cla, Ins.VERIFY_SIGNATURE_INIT, 0x00, _session(session), data)


def verify_signature_close(cla: int, session: int) -> Command:
    """VERIFY SIGNATURE INIT (close): ``2C 01 <sess>``."""
    return Command(cla, Ins.VERIFY_SIGNATURE_INIT, 0x01, _session(session))


def signature_tlv(signature: bytes, *, two_byte_length: bool = True) -> bytes:
    """Tag ``33`` with the signature; ``33 00 40 ..`` (wolfSSL, at_talk) or BER ``33 40 ..``."""
    if two_byte_length:
        return b"\x33" + len(signature).to_bytes(2, "big") + signature
    return tlv.encode(0x33, signature)


def verify_signature_update(
    cla: int,
    session: int,
    signature: bytes,
    *,
    digest: bytes | None = None,
    message: bytes | None = None,
    two_byte_length: bool = True,
) -> Command:
    """VERIFY SIGNATURE UPDATE (last): ``2D 80 <sess> | 9E <digest> | 33 00 40 <r||s>``."""
    if (digest is None) == (message is None):
        raise CommandFormatError("give the digest (final hash) or the message (full text)", _BUG)
    head = tlv.encode(0x9E, digest) if digest is not None else tlv.encode(0x9B, message or b"")
    data = head + signature_tlv(signature, two_byte_length=two_byte_length)
    return Command(cla, Ins.VERIFY_SIGNATURE_UPDATE, 0x80, _session(session), data)


def get_random(cla: int, length: int) -> Command:
    """GET RANDOM: ``84 00 00``, Le = number of bytes (1-256, 256 as ``00``)."""
    if not 1 <= length <= 256:
        raise CommandFormatError(f"GET RANDOM of {length} bytes is not 1-256", _BUG)
    return Command(cla, Ins.GET_RANDOM, 0x00, 0x00, le=length & 0xFF)


def generate_key_pair(cla: int, key: ObjectRef) -> Command:
    """GENERATE KEY PAIR: ``B9 00 00 | 84 <id>`` (the applet may change the ID)."""
    return Command(cla, Ins.GENERATE_KEY_PAIR, 0x00, 0x00, key.tlv("private"))


def read_public_key(cla: int, key: ObjectRef) -> Command:
    """READ PUBLIC KEY: ``CD 00 00 | 85 <id>``."""
    return Command(cla, Ins.READ_PUBLIC_KEY, 0x00, 0x00, key.tlv("public"))


def public_key_blob(point: bytes) -> bytes:
    """``34 45 49 43 86 41 04 X Y``: an uncompressed EC point in IoT SAFE's key template."""
    return tlv.encode(0x34, tlv.encode(0x49, tlv.encode(0x86, point)))


def put_public_key_init(cla: int, session: int, key: ObjectRef) -> Command:
    """PUT PUBLIC KEY INIT (open): ``24 00 <sess> | 85 <id>``."""
    return Command(cla, Ins.PUT_PUBLIC_KEY_INIT, 0x00, _session(session), key.tlv("public"))


def put_public_key_update(cla: int, session: int, point: bytes) -> list[Command]:
    """PUT PUBLIC KEY UPDATE: ``D8 80 <sess> | 34 45 49 43 86 41 04 X Y`` (chunked > 255)."""
    blob = public_key_blob(point)
    pieces = [blob[i : i + 0xFF] for i in range(0, len(blob), 0xFF)]
    return [
        Command(
            cla,
            Ins.PUT_PUBLIC_KEY_UPDATE,
            0x80 if i == len(pieces) - 1 else 0x00,
            _session(session),
            piece,
        )
        for i, piece in enumerate(pieces)
    ]


def put_public_key_close(cla: int, session: int) -> Command:
    """PUT PUBLIC KEY INIT (close): ``24 01 <sess>``."""
    return Command(cla, Ins.PUT_PUBLIC_KEY_INIT, 0x01, _session(session))


def compute_dh(cla: int, private_key: ObjectRef, public_key: ObjectRef) -> Command:
    """COMPUTE DH (ECKA): ``46 00 00 | 84 <priv id> 85 <pub id>``."""
    data = private_key.tlv("private") + public_key.tlv("public")
    return Command(cla, Ins.COMPUTE_DH, 0x00, 0x00, data)


def _session(session: int) -> int:
    if not 0 <= session <= 0xFF:
        raise CommandFormatError(f"session number {session} is not one byte", _BUG)
    return session


# ------------------------------------------------------------------------------- parsers


@dataclass(frozen=True)
class AppletInfo:
    """GET DATA application info (P1 ``00``)."""

    version: bytes = b""
    applet_id: str = ""
    max_files: int | None = None
    max_private_keys: int | None = None
    max_public_keys: int | None = None
    max_secret_keys: int | None = None
    max_sessions: int | None = None
    crypto_functions: int = 0
    hash_algorithms: int = 0
    signature_algorithms: int = 0
    key_agreement_algorithms: int = 0
    kdf_algorithms: int = 0
    raw: bytes = field(default=b"", repr=False)


def parse_application_info(data: bytes) -> AppletInfo:
    """Decode application info; tolerates a 1-byte hash bitmap (an applet bug Orange saw)."""
    items = tlv.as_dict(_decode(data, "GET DATA application info"))

    def number(tag: int) -> int | None:
        value = items.get(tag)
        return int.from_bytes(value, "big") if value else None

    return AppletInfo(
        version=items.get(0x10, b""),
        applet_id=items.get(0x11, b"").decode("ascii", errors="replace"),
        max_files=number(0xB1),
        max_private_keys=number(0xB2),
        max_public_keys=number(0xB3),
        max_secret_keys=number(0xB4),
        max_sessions=number(0xB7),
        crypto_functions=number(0x90) or 0,
        hash_algorithms=number(0x91) or 0,
        signature_algorithms=number(0x92) or 0,
        key_agreement_algorithms=number(0x93) or 0,
        kdf_algorithms=number(0x94) or 0,
        raw=bytes(data),
    )


_ENTRY_KINDS = {0xC1: "private", 0xC2: "public", 0xC3: "file", 0xC4: "secret"}
_ENTRY_TAGS = {v: k for k, v in _ENTRY_KINDS.items()}


@dataclass(frozen=True)
class ObjectEntry:
    """One object of the object list (or of GET DATA ``C1``-``C4``)."""

    kind: str
    """``private``, ``public``, ``file`` or ``secret``."""
    id: bytes = b""
    label: str = ""
    access: int = 0
    state: int | None = None
    key_type: int | None = None
    key_usage: int | None = None
    crypto_functions: int = 0
    signature_algorithms: int | None = None
    hash_algorithms: int | None = None
    key_agreement: int | None = None
    file_size: int | None = None
    file_usage: int | None = None

    @property
    def ref(self) -> ObjectRef:
        """How to name this object in a command (its ID, else its label)."""
        return ObjectRef(id=self.id) if self.id else ObjectRef(label=self.label)

    @property
    def curve(self) -> str:
        """``secp256r1``, ``brainpoolP256r1``, ``RSA-2048``... from the key type."""
        if self.key_type in (0x13, 0x14):
            return "secp256r1"
        if self.key_type in (0x23, 0x24):
            return "brainpoolP256r1"
        if self.key_type is None:
            return ""
        return tlv.KEY_TYPES.get(self.key_type, f"key type {self.key_type:02X}")

    @property
    def can_sign(self) -> bool:
        """An activated EC key with the sign function and ECDSA (when algorithms are listed)."""
        return (
            self.kind == "private"
            and self.state != 0x00
            and bool(self.crypto_functions & 0x01)
            and self.curve in ("secp256r1", "brainpoolP256r1")
            and (self.signature_algorithms is None or bool(self.signature_algorithms & SIG_ECDSA))
        )

    def describe(self) -> str:
        parts = [self.kind, self.id.hex().upper() or "-", repr(self.label)]
        if self.kind == "file":
            parts.append(f"{self.file_size} bytes")
        else:
            parts.append(self.curve)
        return " ".join(parts)


def parse_object_entry(kind: str, items: Iterable[tlv.Tlv]) -> ObjectEntry:
    """An :class:`ObjectEntry` from the TLVs inside a ``C1``-``C4`` entry."""
    values = tlv.as_dict(items)
    id_tag, label_tag = _REF_TAGS[kind]

    def number(tag: int) -> int | None:
        value = values.get(tag)
        return int.from_bytes(value, "big") if value else None

    return ObjectEntry(
        kind=kind,
        id=values.get(id_tag, b""),
        label=values.get(label_tag, b"").decode("utf-8", errors="replace"),
        access=number(0x60) or 0,
        state=number(0x4A),
        key_type=number(0x4B),
        key_usage=number(0x4E),
        crypto_functions=number(0x61) or 0,
        signature_algorithms=number(0x92),
        hash_algorithms=number(0x91),
        key_agreement=number(0x6F),
        file_size=number(0x20),
        file_usage=number(0x21),
    )


def parse_object_list(data: bytes) -> list[ObjectEntry]:
    """Decode GET DATA object list (``C1``/``C2``/``C3``/``C4`` entries, other tags skipped)."""
    entries = []
    for item in _decode(data, "GET DATA object list", nested=True):
        kind = _ENTRY_KINDS.get(item.tag)
        if kind is not None:
            entries.append(parse_object_entry(kind, item.children))
    return entries


def parse_object_info(data: bytes, kind: str) -> ObjectEntry:
    """Decode GET DATA ``C1``-``C4``: the entry's TLVs, wrapped in its tag or not."""
    items = _decode(data, f"GET DATA {kind} info", nested=True)
    if len(items) == 1 and items[0].tag == _ENTRY_TAGS[kind]:
        return parse_object_entry(kind, items[0].children)
    return parse_object_entry(kind, items)


def parse_public_key(data: bytes) -> bytes:
    """The uncompressed point ``04||X||Y`` from ``34 45 49 43 86 41 ..`` (or a bare ``49``/``86``
    template, or a bare point)."""
    data = bytes(data)
    if data[:1] == b"\x04" and len(data) in (65, 97, 133):
        return data
    items = _decode(data, "public key", nested=True)
    point = _find_point(items)
    if point is None or point[:1] != b"\x04":
        raise ResponseFormatError(
            f"no uncompressed EC point (tag 86, 04||X||Y) in public key data {data.hex()}",
            "the applet answered an unexpected public key format; see the APDU trace",
        )
    return point


def _find_point(items: Iterable[tlv.Tlv]) -> bytes | None:
    for item in items:
        if item.tag == 0x86 and item.value[:1] == b"\x04":
            return item.value
        if item.children:
            found = _find_point(item.children)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class GeneratedKey:
    """GENERATE KEY PAIR's answer: the IDs the applet chose and the new public point."""

    private_id: bytes
    public_id: bytes
    point: bytes


def parse_generated_key(data: bytes) -> GeneratedKey:
    """Decode ``84 <id> 85 <id> 34 45 49 43 86 41 04 X Y``."""
    items = _decode(data, "GENERATE KEY PAIR", nested=True)
    values = tlv.as_dict(items)
    point = _find_point(items)
    if point is None:
        raise ResponseFormatError(
            "GENERATE KEY PAIR answered no public key (tag 34)", "see the APDU trace"
        )
    return GeneratedKey(values.get(0x84, b""), values.get(0x85, b""), point)


def parse_signature(data: bytes, field_bytes: int = FIELD_BYTES) -> bytes:
    """Raw ``r||s`` from a COMPUTE SIGNATURE answer, whatever encoding the applet chose.

    Accepts ``33 LL``, ``33 81 LL``, ``33 82 HH LL``, ``33 00 LL`` and a bare value; the value
    may be raw ``r||s`` (IoT.05) or a DER ``SEQUENCE { r, s }`` (some applets, quirk 3).
    """
    data = bytes(data)
    if not data:
        raise ResponseFormatError(
            "COMPUTE SIGNATURE UPDATE answered no signature", "see the APDU trace"
        )
    body = data
    if data[0] == 0x33:
        try:
            length, start = tlv.decode_tolerant_tail(data, 0)
            body = data[start : start + length]
        except TlvError as exc:
            if len(data) != 2 * field_bytes:
                raise ResponseFormatError(f"signature: {exc.problem}", exc.fix) from None
    return signature_to_raw(body, field_bytes)


def signature_to_raw(body: bytes, field_bytes: int = FIELD_BYTES) -> bytes:
    """``r||s`` from raw or DER signature bytes (raw wins when the length is exactly 2×field)."""
    if len(body) == 2 * field_bytes:
        return body
    if body[:1] == b"\x30":
        try:
            r, s = decode_dss_signature(body)
        except ValueError:
            pass
        else:
            if r.bit_length() <= 8 * field_bytes and s.bit_length() <= 8 * field_bytes:
                return r.to_bytes(field_bytes, "big") + s.to_bytes(field_bytes, "big")
    raise ResponseFormatError(
        f"signature of {len(body)} bytes is neither raw r||s ({2 * field_bytes} bytes) nor DER",
        "the applet answered an unexpected signature format; see the APDU trace",
    )


def split_signature_tail(data: bytes) -> tuple[list[tlv.Tlv], bytes]:
    """TLVs before a final signature tag ``33`` and the signature value (any length form).

    VERIFY SIGNATURE UPDATE carries ``9E``/``9B`` then ``33``, and hosts write ``33`` with a
    BER or a non-BER 2-byte length; the ``33`` must be the last TLV. Without a ``33`` the
    signature is empty.
    """
    data = bytes(data)
    items: list[tlv.Tlv] = []
    offset = 0
    while offset < len(data):
        if data[offset] == 0x33:
            length, start = tlv.decode_tolerant_tail(data, offset)
            return items, data[start : start + length]
        length, start = tlv.decode_length(data, offset + 1)
        if start + length > len(data):
            raise TlvError(f"TLV {data[offset]:02X} at offset {offset} is truncated", _BUG)
        items.append(tlv.Tlv(data[offset], data[start : start + length]))
        offset = start + length
    return items, b""


def parse_file_size(data: bytes) -> int:
    """File size (tag ``20``, 2 bytes big-endian, as wolfSSL reads it) from GET DATA ``C3``."""
    entry = parse_object_info(data, "file")
    if entry.file_size is None:
        raise ResponseFormatError("GET DATA file info has no size (tag 20)", "see the APDU trace")
    return entry.file_size


def _decode(data: bytes, what: str, *, nested: bool = False) -> list[tlv.Tlv]:
    try:
        return tlv.decode(data, nested=nested)
    except TlvError as exc:
        raise ResponseFormatError(f"{what}: {exc.problem}", exc.fix) from None


# ------------------------------------------------------------------------------- describing


def describe_command(raw: bytes) -> tuple[str, str]:
    """``(name, detail)`` of a command for the APDU trace; never raises."""
    try:
        command = parse_command(raw)
    except CommandFormatError:
        return "malformed command", raw.hex().upper()
    name = command.name
    parts = [f"ch {command.channel}", "CLA 8x" if class_of(command.cla) else "CLA 0x"]
    ins, p1, p2 = command.ins, command.p1, command.p2
    if ins == Ins.MANAGE_CHANNEL:
        parts.append("open" if p1 == 0x00 else f"close channel {p2}")
    elif ins == Ins.SELECT:
        parts.append(f"AID {command.data.hex().upper()}")
    elif ins in (Ins.COMPUTE_SIGNATURE_INIT, Ins.VERIFY_SIGNATURE_INIT, Ins.PUT_PUBLIC_KEY_INIT):
        parts.append(f"{'open' if p1 == 0 else 'close'} session {p2:02X}")
    elif ins in (
        Ins.COMPUTE_SIGNATURE_UPDATE,
        Ins.VERIFY_SIGNATURE_UPDATE,
        Ins.PUT_PUBLIC_KEY_UPDATE,
    ):
        parts.append(f"{'last' if p1 & 0x80 else 'more'} session {p2:02X}")
    elif ins == Ins.GET_DATA:
        parts.append(_GET_DATA_NAMES.get(p1, f"P1 {p1:02X}"))
    elif ins == Ins.READ_FILE:
        parts.append(f"offset {(p1 << 8) | p2}")
    if command.data and ins not in (Ins.SELECT, Ins.VERIFY_PIN):
        parts.append(_describe_data(command))
    elif ins == Ins.VERIFY_PIN and command.data:
        parts.append("PIN (hidden)")
    if command.le is not None:
        parts.append(f"Le {command.le or 256}")
    return name, ", ".join(parts)


_GET_DATA_NAMES = {
    0x00: "application info",
    0x01: "object list",
    0xC1: "private key info",
    0xC2: "public key info",
    0xC3: "file info",
    0xC4: "secret key info",
}


def _describe_data(command: Command) -> str:
    data = command.data
    if command.ins == Ins.VERIFY_SIGNATURE_UPDATE:
        try:
            items, signature = split_signature_tail(data)
        except TlvError:
            return f"{len(data)} bytes (not TLV)"
        shown = "; ".join(item.describe() for item in items)
        return f"{shown}; 33 signature ({len(signature)} bytes)"
    return tlv.describe_all(data)


def describe_response(command_raw: bytes, response_raw: bytes) -> str:
    """A short reading of a response's data for the trace; never raises."""
    if len(response_raw) <= 2:
        return ""
    data = response_raw[:-2]
    ins = command_raw[1] if len(command_raw) > 1 else -1
    if ins == Ins.MANAGE_CHANNEL and len(data) == 1:
        return f"channel {data[0]}"
    if ins in (Ins.GET_RANDOM, Ins.READ_FILE, Ins.COMPUTE_DH, Ins.GET_RESPONSE):
        return f"{len(data)} bytes"
    if ins == Ins.COMPUTE_SIGNATURE_UPDATE:
        return f"signature, {len(data)} bytes ({data[:3].hex().upper()}…)"
    return tlv.describe_all(data)
