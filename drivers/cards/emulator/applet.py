"""A GSMA IoT SAFE applet in Python: the same bytes in and out as a real applet, timed.

:meth:`IoTSafeApplet.process_apdu` takes a command APDU and returns the response with its SW,
for the whole card the host sees: MANAGE CHANNEL, SELECT by AID, GET RESPONSE, ISO VERIFY
(PIN), and the IoT.05 commands of ``research/iotsafe-apdu.md`` §1.3 (GET DATA, READ FILE,
COMPUTE/VERIFY SIGNATURE in all modes, GET RANDOM, GENERATE KEY PAIR, READ/PUT PUBLIC KEY,
COMPUTE DH). COMPUTE PRF and HKDF answer ``6D00``, as on applets without them.

Behaviours where real applets differ are quirks of the profile (:class:`Quirks`): T=0
``61xx``, ``6Cxx`` on a wrong Le, accepted CLA classes, the signature's length form and
encoding, what INIT on an open session does, valid session numbers. Where the reference is
silent, choices are documented at the handler (e.g. the last UPDATE ends the session, so a
PKCS#11-like ``C_SignInit``/``C_Sign`` loop needs no close per signature).

Post-quantum signatures (SAFE Lab's extension; IoT.05 predates PQC): a PQC key provisioned
with :func:`~drivers.cards.emulator.pqc.add_pqc_key` signs through the same COMPUTE SIGNATURE
INIT/UPDATE, with its own tag ``92`` value, and really signs (ML-DSA, FN-DSA, SLH-DSA from the
software libraries), so a 2,420-byte ML-DSA-44 signature leaves the card as real chained
APDUs: ``61xx`` + GET RESPONSE of 256 bytes each, or all at once to an extended-length APDU
when the profile has the ``extended_length`` quirk. INIT refuses an algorithm the profile's
``[card.pqc]`` RAM cannot hold (``6A84``) or has no model for (``6A80``). The ECDSA path is
unchanged.

Timing: each APDU's modelled time is link time (profile ``[transport]``, by bytes moved) plus
card time (profile ``[card]``: per command, plus crypto, plus on-card hashing), multiplied by
``speed``, and realised by a :class:`Delay` measured from the APDU's arrival, so the
emulator's own Python work is inside the modelled time, never added to it.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, overload

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from drivers.cards import apdu, sha256_state, tlv
from drivers.cards.apdu import GSMA_AID, Command, Ins
from drivers.cards.emulator.delay import Delay, PreciseDelay
from drivers.cards.emulator.pqc import PqcKeyObject, algorithm_for_code
from drivers.cards.emulator.profile import INSTANT, CardProfile
from drivers.cards.emulator.store import (
    ACCESS_READ,
    ACCESS_UPDATE,
    FN_AGREE,
    FN_KEYGEN,
    FN_SIGN,
    KEY_TYPE_OF_CURVE,
    CardObject,
    CardStore,
    FileObject,
    ObjectKind,
    PrivateKeyObject,
    PublicKeyObject,
)
from drivers.cards.errors import CardError, CommandFormatError, TlvError
from drivers.cards.status import SW, bytes_remaining, pin_tries_left, wrong_le
from drivers.tokens.base import CURVES

APPLET_ID = b"SAFE Lab emulator"
SPEC_VERSION = b"\x01\x00"

_COMMAND_KEYS: dict[int, str] = {
    Ins.MANAGE_CHANNEL: "manage_channel",
    Ins.SELECT: "select",
    Ins.GET_RESPONSE: "get_response",
    Ins.VERIFY_PIN: "verify_pin",
    Ins.GET_DATA: "get_data",
    Ins.READ_FILE: "read_file",
    Ins.COMPUTE_SIGNATURE_INIT: "compute_signature_init",
    Ins.COMPUTE_SIGNATURE_UPDATE: "compute_signature_update",
    Ins.VERIFY_SIGNATURE_INIT: "verify_signature_init",
    Ins.VERIFY_SIGNATURE_UPDATE: "verify_signature_update",
    Ins.PUT_PUBLIC_KEY_INIT: "put_public_key_init",
    Ins.PUT_PUBLIC_KEY_UPDATE: "put_public_key_update",
    Ins.GENERATE_KEY_PAIR: "generate_key_pair",
    Ins.READ_PUBLIC_KEY: "read_public_key",
    Ins.COMPUTE_DH: "compute_dh",
    Ins.GET_RANDOM: "get_random",
}
_ISO_INS = frozenset({Ins.MANAGE_CHANNEL, Ins.SELECT, Ins.GET_RESPONSE, Ins.VERIFY_PIN})


class _Status(Exception):
    """Internal: stop processing and answer this status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass
class _Session:
    kind: str
    """``sign``, ``verify`` or ``put``."""
    mode: int = apdu.Mode.FINAL_HASH
    private_key: PrivateKeyObject | None = None
    public_key: PublicKeyObject | None = None
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    buffer: bytes = b""
    pqc_key: PqcKeyObject | None = None


@dataclass
class _Channel:
    selected: bool = False
    pending: bytes = b""
    sessions: dict[int, _Session] = field(default_factory=dict)


@dataclass
class _Work:
    """What the card did for one APDU, for its modelled time."""

    crypto: str | None = None
    curve: str = "secp256r1"
    hashed_bytes: int = 0


@dataclass(frozen=True)
class SampledDelay:
    """The modelled time of one APDU, before the speed factor."""

    command: str
    transport_ms: float
    card_ms: float

    @property
    def total_ms(self) -> float:
        return self.transport_ms + self.card_ms


class IoTSafeApplet:
    """An IoT SAFE applet on an emulated card, answering APDUs as bytes.

    ``speed`` scales every modelled delay (``1.0`` real time, ``0.01`` for tests, ``0`` none);
    ``seed`` makes the sampled delays reproducible; ``delay`` realises them (default
    :class:`PreciseDelay`). Thread-safe: one APDU at a time, like a card.
    """

    def __init__(
        self,
        store: CardStore,
        profile: CardProfile = INSTANT,
        *,
        speed: float = 1.0,
        seed: int | None = None,
        delay: Delay | None = None,
        aid: bytes = GSMA_AID,
        hosted_aids: tuple[bytes, ...] = (),
        on_unknown_aid: Callable[[bytes], None] | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.store = store
        self.profile = profile
        self.quirks = profile.quirks
        self.speed = speed
        self.rng = random.Random(seed)
        self.delay: Delay = delay if delay is not None else PreciseDelay()
        self.aid = aid
        self.aids: tuple[bytes, ...] = ()
        """Every AID the applet answers to: ``aid`` (the GSMA one) and the hosted ones."""
        for extra in (aid, *hosted_aids):
            self.host_aid(extra)
        self.on_unknown_aid = on_unknown_aid
        """Told the AID of every SELECT the card does not host (``card serve`` logs it)."""
        self.unknown_aids: deque[bytes] = deque(maxlen=100)
        self.channels: dict[int, _Channel] = {0: _Channel()}
        self.samples: deque[SampledDelay] = deque(maxlen=100_000)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- entry point

    def process_apdu(self, raw: bytes) -> bytes:
        """Answer one command APDU with response data and SW, after its modelled time."""
        start = time.perf_counter_ns()
        with self._lock, self.store.lock:
            raw = bytes(raw)
            work = _Work()
            key = "default"
            try:
                command = apdu.parse_command(raw)
                key = _COMMAND_KEYS.get(command.ins, "default")
                response = self._process(command, work)
            except CommandFormatError:
                response = SW.WRONG_LENGTH.raw
            card_ms = self.profile.card_ms(
                key,
                self.rng,
                crypto=work.crypto,
                curve=work.curve,
                hashed_bytes=work.hashed_bytes,
            )
            transport_ms = self.profile.transport_ms(len(raw) + len(response), self.rng, key)
            self.samples.append(SampledDelay(key, transport_ms, card_ms))
            delay_ns = int((card_ms + transport_ms) * 1e6 * self.speed)
        self.delay.wait(start, delay_ns)
        return response

    def _process(self, command: Command, work: _Work) -> bytes:
        channel_no = command.channel
        channel = self.channels.get(channel_no)
        try:
            if command.extended and not self.quirks.extended_length:
                raise _Status(SW.WRONG_LENGTH)
            if command.ins == Ins.SELECT and channel is None:
                channel = self._implicit_open(channel_no)
            if channel is None:
                raise _Status(SW.CHANNEL_NOT_SUPPORTED)
            if command.ins == Ins.GET_RESPONSE:
                return self._get_response(channel, command)
            channel.pending = b""
            if command.ins in _ISO_INS:
                if command.cla & 0x80 and command.ins != Ins.GET_RESPONSE:
                    raise _Status(SW.CLA_NOT_SUPPORTED)
                data = self._iso(command, channel, channel_no)
            else:
                if not channel.selected:
                    raise _Status(SW.INS_NOT_SUPPORTED)
                self._check_class(command.cla)
                data = self._iot_safe(command, channel, work)
        except _Status as status:
            return status.sw.to_bytes(2, "big")
        return self._deliver(command, channel, data)

    def _implicit_open(self, channel_no: int) -> _Channel | None:
        """SELECT on a closed channel opens it (Java Card does; wolfSSL relies on it)."""
        if channel_no >= self.quirks.max_channels:
            return None
        channel = self.channels[channel_no] = _Channel()
        return channel

    def _check_class(self, cla: int) -> None:
        allowed = self.quirks.cla
        proprietary = bool(cla & 0x80)
        if (allowed == "proprietary" and not proprietary) or (allowed == "iso" and proprietary):
            raise _Status(SW.CLA_NOT_SUPPORTED)

    # ------------------------------------------------------------------------- delivery

    def _deliver(self, command: Command, channel: _Channel, data: bytes) -> bytes:
        """Send ``data`` the way the link would: T=0 ``61xx``/``6Cxx`` or directly."""
        ok = SW.OK.raw
        if not data:
            return ok
        if command.extended:  # only reached with the extended_length quirk
            limit = command.le or 65536
            if len(data) > limit:
                channel.pending = data[limit:]
                return data[:limit] + bytes_remaining(len(channel.pending))
            return data + ok
        case2 = command.le is not None and not command.data
        if self.quirks.t0:
            if case2:
                assert command.le is not None
                want = command.le or 256
                if len(data) == want:
                    return data + ok
                if len(data) < want:
                    if self.quirks.strict_le:
                        return wrong_le(len(data))
                    return data + ok
                channel.pending = data[want:]
                return data[:want] + bytes_remaining(len(channel.pending))
            channel.pending = data
            return bytes_remaining(len(data))
        limit = (command.le or 256) if command.le is not None else 256
        if len(data) > limit:
            channel.pending = data[limit:]
            return data[:limit] + bytes_remaining(len(channel.pending))
        return data + ok

    def _get_response(self, channel: _Channel, command: Command) -> bytes:
        if not channel.pending:
            return SW.CONDITIONS_NOT_SATISFIED.raw
        want = (command.le or 256) if command.le is not None else 256
        chunk, channel.pending = channel.pending[:want], channel.pending[want:]
        if channel.pending:
            return chunk + bytes_remaining(len(channel.pending))
        return chunk + SW.OK.raw

    # ------------------------------------------------------------------------- ISO commands

    def _iso(self, command: Command, channel: _Channel, channel_no: int) -> bytes:
        if command.ins == Ins.MANAGE_CHANNEL:
            return self._manage_channel(command, channel_no)
        if command.ins == Ins.SELECT:
            return self._select(command, channel)
        return self._verify_pin(command)

    def _manage_channel(self, command: Command, channel_no: int) -> bytes:
        if command.p1 == 0x00:
            if command.p2 != 0x00:
                if command.p2 in self.channels or command.p2 >= self.quirks.max_channels:
                    raise _Status(SW.FUNCTION_NOT_SUPPORTED)
                self.channels[command.p2] = _Channel()
                return b""
            for number in range(1, self.quirks.max_channels):
                if number not in self.channels:
                    self.channels[number] = _Channel()
                    return bytes([number])
            raise _Status(SW.FUNCTION_NOT_SUPPORTED)
        if command.p1 == 0x80:
            target = command.p2 or channel_no
            if target == 0:
                raise _Status(SW.INCORRECT_P1P2)
            if target not in self.channels:
                raise _Status(SW.CHANNEL_NOT_SUPPORTED)
            del self.channels[target]
            return b""
        raise _Status(SW.INCORRECT_P1P2)

    def host_aid(self, aid: bytes) -> None:
        """Answer SELECT under ``aid`` too: vendor stacks select their own applet AID."""
        if aid not in self.aids:
            self.aids = (*self.aids, aid)

    def _hosts(self, asked: bytes) -> bool:
        """An exact hosted AID, or a partial one (ISO 7816-4: a prefix of at least the RID)."""
        if asked in self.aids:
            return True
        return len(asked) >= 5 and sum(aid.startswith(asked) for aid in self.aids) == 1

    def _select(self, command: Command, channel: _Channel) -> bytes:
        if command.p1 != 0x04:
            raise _Status(SW.INCORRECT_P1P2)
        if not self._hosts(command.data):
            self.unknown_aids.append(command.data)
            if self.on_unknown_aid is not None:
                self.on_unknown_aid(command.data)
            raise _Status(SW.REFERENCE_NOT_FOUND)
        channel.selected = True
        channel.sessions.clear()
        return b""

    def _verify_pin(self, command: Command) -> bytes:
        store = self.store
        if command.p2 != 0x01:
            raise _Status(SW.REFERENCED_DATA_NOT_FOUND)
        if store.pin is None:
            return b""
        if store.pin_tries <= 0:
            raise _Status(SW.PIN_BLOCKED)
        if not command.data:
            if store.pin_verified:
                return b""
            raise _Status(pin_tries_left(store.pin_tries))
        expected = store.pin.encode().ljust(8, b"\xff")
        if command.data == expected:
            store.pin_tries = 3
            store.pin_verified = True
            return b""
        store.pin_tries -= 1
        store.pin_verified = False
        raise _Status(SW.PIN_BLOCKED if store.pin_tries == 0 else pin_tries_left(store.pin_tries))

    def _require_pin(self) -> None:
        if self.store.pin is not None and not self.store.pin_verified:
            raise _Status(SW.SECURITY_STATUS)

    # ------------------------------------------------------------------------- IoT SAFE

    def _iot_safe(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        handlers: dict[int, Callable[[Command, _Channel, _Work], bytes]] = {
            Ins.GET_DATA: self._get_data,
            Ins.READ_FILE: self._read_file,
            Ins.COMPUTE_SIGNATURE_INIT: self._signature_init,
            Ins.VERIFY_SIGNATURE_INIT: self._signature_init,
            Ins.COMPUTE_SIGNATURE_UPDATE: self._sign_update,
            Ins.VERIFY_SIGNATURE_UPDATE: self._verify_update,
            Ins.PUT_PUBLIC_KEY_INIT: self._put_key_init,
            Ins.PUT_PUBLIC_KEY_UPDATE: self._put_key_update,
            Ins.GENERATE_KEY_PAIR: self._generate_key_pair,
            Ins.READ_PUBLIC_KEY: self._read_public_key,
            Ins.COMPUTE_DH: self._compute_dh,
            Ins.GET_RANDOM: self._get_random,
        }
        handler = handlers.get(command.ins)
        if handler is None:
            raise _Status(SW.INS_NOT_SUPPORTED)
        return handler(command, channel, work)

    @staticmethod
    def _tlvs(data: bytes) -> dict[int, bytes]:
        try:
            return tlv.as_dict(tlv.decode(data))
        except TlvError:
            raise _Status(SW.INCORRECT_DATA) from None

    @overload
    def _object(self, kind: Literal["private"], values: dict[int, bytes]) -> PrivateKeyObject: ...
    @overload
    def _object(self, kind: Literal["public"], values: dict[int, bytes]) -> PublicKeyObject: ...
    @overload
    def _object(self, kind: Literal["file"], values: dict[int, bytes]) -> FileObject: ...
    @overload
    def _object(self, kind: ObjectKind, values: dict[int, bytes]) -> CardObject: ...
    def _object(self, kind: ObjectKind, values: dict[int, bytes]) -> CardObject:
        id_tag, label_tag = {"private": (0x84, 0x74), "public": (0x85, 0x75), "file": (0x83, 0x73)}[
            kind
        ]
        if id_tag in values:
            found = self.store.find(kind, id=values[id_tag])
        elif label_tag in values:
            found = self.store.find(kind, label=values[label_tag].decode("utf-8", "replace"))
        else:
            raise _Status(SW.INCORRECT_DATA)
        if found is None:
            raise _Status(SW.REFERENCE_NOT_FOUND)
        return found

    # GET DATA ------------------------------------------------------------------------------

    def _get_data(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        if command.p2 != 0x00:
            raise _Status(SW.INCORRECT_P1P2)
        if command.p1 == 0x00:
            return self._application_info()
        if command.p1 == 0x01:
            return self._object_list()
        kinds: dict[int, ObjectKind] = {0xC1: "private", 0xC2: "public", 0xC3: "file"}
        if command.p1 in kinds:
            kind = kinds[command.p1]
            obj = self._object(kind, self._tlvs(command.data))
            return tlv.encode(command.p1, self._entry(obj))
        if command.p1 == 0xC4:
            raise _Status(SW.REFERENCE_NOT_FOUND)
        raise _Status(SW.INCORRECT_P1P2)

    def _application_info(self) -> bytes:
        q = self.quirks
        return tlv.encode_all(
            [
                (0x10, SPEC_VERSION),
                (0x11, APPLET_ID),
                (0xB1, bytes([8])),
                (0xB2, bytes([8])),
                (0xB3, bytes([8])),
                (0xB4, bytes([0])),
                (0x90, bytes([FN_SIGN | FN_KEYGEN | FN_AGREE])),
                (0x91, b"\x00\x01"),
                (0x92, b"\x04"),
                (0x93, b"\x01"),
                (0x94, b"\x00"),
                (0xB7, bytes([q.max_sessions])),
            ]
        )

    def _object_list(self) -> bytes:
        out = b""
        tables: list[tuple[int, Mapping[bytes, CardObject]]] = [
            (0xC1, self.store.private_keys),
            (0xC2, self.store.public_keys),
            (0xC3, self.store.files),
        ]
        for tag, table in tables:
            for obj in table.values():
                out += tlv.encode(tag, self._entry(obj))
        for pqc in self.store.pqc_keys.values():
            out += tlv.encode(0xC1, self._pqc_entry(pqc, private=True))
            out += tlv.encode(0xC2, self._pqc_entry(pqc, private=False))
        return out

    @staticmethod
    def _pqc_entry(obj: PqcKeyObject, *, private: bool) -> bytes:
        """A PQC key's object-list entry: SAFE Lab's key type and tag-92 values."""
        algorithm = obj.algorithm
        return tlv.encode_all(
            [
                (0x74 if private else 0x75, obj.label.encode()),
                (0x84 if private else 0x85, obj.id),
                (0x60, b"\x00" if private else bytes([ACCESS_READ])),
                (0x4A, b"\x01"),
                (0x4B, bytes([algorithm.key_type or 0])),
                *([(0x4E, b"\x01")] if private else []),
                (0x61, bytes([FN_SIGN])),
                (0x92, bytes([algorithm.iotsafe_code or 0])),
                (0x91, b"\x00\x01"),
            ]
        )

    @staticmethod
    def _entry(obj: CardObject) -> bytes:
        """The object's GET DATA entry (object list ``C1``/``C2``/``C3`` contents)."""
        if isinstance(obj, FileObject):
            return tlv.encode_all(
                [
                    (0x73, obj.label.encode()),
                    (0x83, obj.id),
                    (0x60, bytes([obj.access])),
                    (0x4A, b"\x01"),
                    (0x20, len(obj.content).to_bytes(2, "big")),
                    (0x21, bytes([obj.usage])),
                ]
            )
        private = isinstance(obj, PrivateKeyObject)
        items = [
            (0x74 if private else 0x75, obj.label.encode()),
            (0x84 if private else 0x85, obj.id),
            (0x60, bytes([obj.access if isinstance(obj, PublicKeyObject) else 0x00])),
            (0x4A, bytes([obj.state if isinstance(obj, PrivateKeyObject) else 0x01])),
            (0x4B, bytes([KEY_TYPE_OF_CURVE.get(obj.curve, 0x13)])),
        ]
        if isinstance(obj, PrivateKeyObject):
            items.append((0x4E, bytes([obj.usage])))
        items.append((0x61, bytes([obj.functions])))
        if obj.functions & FN_SIGN:
            items += [(0x92, b"\x04"), (0x91, b"\x00\x01")]
        if obj.functions & FN_AGREE:
            items.append((0x6F, b"\x01"))
        return tlv.encode_all(items)

    # READ FILE -----------------------------------------------------------------------------

    def _read_file(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        file = self._object("file", self._tlvs(command.data))
        offset = (command.p1 << 8) | command.p2
        if offset > len(file.content):
            raise _Status(SW.WRONG_P1P2)
        want = (command.le or 256) if command.le is not None else 256
        return file.content[offset : offset + want]

    # signature sessions --------------------------------------------------------------------

    def _session_number(self, p2: int) -> int:
        first = self.quirks.first_session
        if not first <= p2 < first + self.quirks.max_sessions:
            raise _Status(SW.INCORRECT_P1P2)
        return p2

    def _signature_init(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        """COMPUTE/VERIFY SIGNATURE INIT: open (P1 00) or close (P1 01) a session.

        Closing a session that is not open succeeds, so Orange's defensive close before each
        INIT works; opening one that is open answers ``6985`` (quirk ``stale_session``).
        """
        number = self._session_number(command.p2)
        kind = "sign" if command.ins == Ins.COMPUTE_SIGNATURE_INIT else "verify"
        if command.p1 == 0x01:
            channel.sessions.pop(number, None)
            return b""
        if command.p1 != 0x00:
            raise _Status(SW.INCORRECT_P1P2)
        if number in channel.sessions and self.quirks.stale_session == "error":
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        values = self._tlvs(command.data)
        session = _Session(kind)
        pqc = self._pqc_key(values) if kind == "sign" else None
        if pqc is not None:
            self._require_pin()
            self._pqc_init(pqc, values)
            session.pqc_key = pqc
        elif kind == "sign":
            self._require_pin()
            key = self._object("private", values)
            if not key.functions & FN_SIGN or key.state != 0x01:
                raise _Status(SW.CONDITIONS_NOT_SATISFIED)
            session.private_key = key
        else:
            public = self._object("public", values)
            if not public.functions & FN_SIGN:
                raise _Status(SW.CONDITIONS_NOT_SATISFIED)
            session.public_key = public
        mode = values.get(0xA1, b"")
        if len(mode) != 1 or mode[0] not in (1, 2, 3) or (kind == "verify" and mode[0] == 2):
            raise _Status(SW.INCORRECT_DATA)
        session.mode = mode[0]
        hash_algorithm = values.get(0x91, b"\x00\x01")
        if int.from_bytes(hash_algorithm, "big") != 0x0001:
            raise _Status(SW.INCORRECT_DATA)
        if pqc is None and values.get(0x92, b"\x04") != b"\x04":
            raise _Status(SW.INCORRECT_DATA)
        channel.sessions[number] = session
        return b""

    def _pqc_key(self, values: dict[int, bytes]) -> PqcKeyObject | None:
        """The PQC key a COMPUTE SIGNATURE INIT names, if it names one."""
        keys = self.store.pqc_keys
        if 0x84 in values:
            return keys.get(values[0x84])
        if 0x74 in values:
            label = values[0x74].decode("utf-8", "replace")
            return next((k for k in keys.values() if k.label == label), None)
        return None

    def _pqc_init(self, key: PqcKeyObject, values: dict[int, bytes]) -> None:
        """Check the algorithm asked for and that the card can hold its signing at all."""
        code = values.get(0x92, b"")
        if len(code) != 1 or algorithm_for_code(code[0]) is not key.algorithm:
            raise _Status(SW.INCORRECT_DATA)
        pqc = self.profile.pqc
        if pqc is None:
            raise _Status(SW.INCORRECT_DATA)
        reason = pqc.refusal(key.algorithm)
        if reason is not None:
            need = pqc.need_bytes(key.algorithm)
            enough = need is not None and need <= pqc.ram_bytes
            raise _Status(SW.INCORRECT_DATA if enough or need is None else SW.NOT_ENOUGH_MEMORY)

    def _session(self, channel: _Channel, p2: int, kind: str) -> tuple[int, _Session]:
        number = self._session_number(p2)
        session = channel.sessions.get(number)
        if session is None or session.kind != kind:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        return number, session

    def _message_digest(
        self, command: Command, session: _Session, work: _Work, values: dict[int, bytes]
    ) -> bytes | None:
        """Feed this UPDATE's data into the session; the digest on the last block."""
        last = bool(command.p1 & 0x80)
        if session.mode == apdu.Mode.FINAL_HASH:
            digest = values.get(0x9E)
            if not last or digest is None or len(digest) != 32:
                raise _Status(SW.INCORRECT_DATA)
            return digest
        if session.mode == apdu.Mode.FULL_TEXT:
            if 0x9B not in values:
                raise _Status(SW.INCORRECT_DATA)
            session.hasher.update(values[0x9B])
            work.hashed_bytes += len(values[0x9B])
            return session.hasher.digest() if last else None
        block, state, counter = values.get(0x9A), values.get(0x9C), values.get(0x9D)
        if not last or block is None or state is None or counter is None or len(counter) != 4:
            raise _Status(SW.INCORRECT_DATA)
        if len(block) > 0x80 or len(state) != 32:
            raise _Status(SW.INCORRECT_DATA)
        try:
            digest = sha256_state.finish(state, int.from_bytes(counter, "big"), block)
        except CardError:
            raise _Status(SW.INCORRECT_DATA) from None
        work.hashed_bytes += len(block)
        return digest

    def _sign_update(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        number, session = self._session(channel, command.p2, "sign")
        if command.p1 not in (0x00, 0x80):
            raise _Status(SW.INCORRECT_P1P2)
        digest = self._message_digest(command, session, work, self._tlvs(command.data))
        if digest is None:
            return b""
        if session.pqc_key is not None:
            return self._pqc_sign(channel, number, session.pqc_key, digest, work)
        key = session.private_key
        assert key is not None
        der = key.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        work.crypto, work.curve = "ecdsa_sign", key.curve
        if self.quirks.auto_close_after_sign:
            channel.sessions.pop(number, None)
        if self.quirks.signature_format == "der":
            body = der
        else:
            r, s = decode_dss_signature(der)
            body = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.quirks.signature_length == "two-byte":
            return b"\x33" + len(body).to_bytes(2, "big") + body
        return tlv.encode(0x33, body)

    def _pqc_sign(
        self, channel: _Channel, number: int, key: PqcKeyObject, digest: bytes, work: _Work
    ) -> bytes:
        """Sign the digest as the message (pure ML-DSA/FN-DSA/SLH-DSA over SHA-256(m))."""
        signature = key.key.sign(digest)
        work.crypto = f"pqc_sign:{key.algorithm.name}"
        if self.quirks.auto_close_after_sign:
            channel.sessions.pop(number, None)
        if self.quirks.signature_length == "two-byte":
            return b"\x33" + len(signature).to_bytes(2, "big") + signature
        return tlv.encode(0x33, signature)

    def _verify_update(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        number, session = self._session(channel, command.p2, "verify")
        if command.p1 not in (0x00, 0x80):
            raise _Status(SW.INCORRECT_P1P2)
        try:
            items, signature = apdu.split_signature_tail(command.data)
        except (TlvError, CardError):
            raise _Status(SW.INCORRECT_DATA) from None
        digest = self._message_digest(command, session, work, tlv.as_dict(items))
        if digest is None:
            return b""
        channel.sessions.pop(number, None)
        public = session.public_key
        assert public is not None
        work.crypto, work.curve = "ecdsa_verify", public.curve
        try:
            raw = apdu.signature_to_raw(signature)
        except CardError:
            raise _Status(SW.INCORRECT_DATA) from None
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:
            raise _Status(SW.SIGNATURE_MISMATCH) from None
        return b""

    # public keys ---------------------------------------------------------------------------

    def _put_key_init(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        number = self._session_number(command.p2)
        if command.p1 == 0x01:
            channel.sessions.pop(number, None)
            return b""
        if command.p1 != 0x00:
            raise _Status(SW.INCORRECT_P1P2)
        if number in channel.sessions and self.quirks.stale_session == "error":
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        public = self._object("public", self._tlvs(command.data))
        if not public.access & ACCESS_UPDATE:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        channel.sessions[number] = _Session("put", public_key=public)
        return b""

    def _put_key_update(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        _, session = self._session(channel, command.p2, "put")
        session.buffer += command.data
        if not command.p1 & 0x80:
            return b""
        public = session.public_key
        assert public is not None
        try:
            point = apdu.parse_public_key(session.buffer)
            key = ec.EllipticCurvePublicKey.from_encoded_point(CURVES[public.curve], point)
        except (CardError, ValueError):
            session.buffer = b""
            raise _Status(SW.INCORRECT_DATA) from None
        public.key = key
        session.buffer = b""
        return b""

    def _read_public_key(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        public = self._object("public", self._tlvs(command.data))
        return apdu.public_key_blob(public.point)

    def _generate_key_pair(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        self._require_pin()
        private = self._object("private", self._tlvs(command.data))
        if not private.functions & FN_KEYGEN:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        private.key = ec.generate_private_key(CURVES[private.curve])
        public = self.store.public_keys.get(private.id)
        if public is None:
            public = self.store.public_keys[private.id] = PublicKeyObject(
                private.id, private.label, private.key.public_key(), functions=private.functions
            )
        public.key = private.key.public_key()
        work.crypto, work.curve = "keygen", private.curve
        return (
            tlv.encode(0x84, private.id)
            + tlv.encode(0x85, public.id)
            + apdu.public_key_blob(public.point)
        )

    def _compute_dh(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        self._require_pin()
        values = self._tlvs(command.data)
        private = self._object("private", values)
        public = self._object("public", values)
        if not private.functions & FN_AGREE:
            raise _Status(SW.CONDITIONS_NOT_SATISFIED)
        if private.curve != public.curve:
            raise _Status(SW.INCORRECT_DATA)
        work.crypto, work.curve = "ecdh", private.curve
        return private.key.exchange(ec.ECDH(), public.key)

    def _get_random(self, command: Command, channel: _Channel, work: _Work) -> bytes:
        if command.data:
            raise _Status(SW.INCORRECT_DATA)
        length = (command.le or 256) if command.le is not None else 0
        if length == 0:
            raise _Status(SW.WRONG_LENGTH)
        return os.urandom(length)

    # ------------------------------------------------------------------------- inspection

    def reset(self) -> None:
        """A card reset: every channel but 0 closed, nothing selected, no session."""
        with self._lock:
            self.channels = {0: _Channel()}
