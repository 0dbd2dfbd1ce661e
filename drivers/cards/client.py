"""The IoT SAFE applet client: IoT.05 operations over any :class:`Transport`, traced.

What it does for every command, because real applets and links differ (reference §5):

- ``61xx``: fetch the rest with GET RESPONSE (``0<ch> C0 00 00 xx``), repeatedly;
- ``6Cxx``: resend the same command once with ``Le = xx``;
- ``6E00`` on an IoT SAFE command: retry once with the other CLA class (``0x8n`` ↔ ``0x0n``)
  and keep using the class that worked;
- COMPUTE SIGNATURE INIT answered ``6985`` (a stale session left open): close the session and
  retry once; answered ``6A86`` (no such session number): retry once with session 00 ↔ 01 and
  keep it;
- signatures in any length form (``33 40``, ``33 00 40``, ``33 81 ..``) and raw or DER.

Every APDU, including the retries, is kept in the :class:`TraceLog` with its own timing, so a
trace shows what each quirk costs. Error status words become the named errors of
:mod:`drivers.cards.status`; PINs are never retried.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable

from drivers.cards import apdu, sha256_state
from drivers.cards.apdu import (
    GSMA_AID,
    ISO,
    PROPRIETARY,
    AppletInfo,
    Command,
    GeneratedKey,
    GetDataP1,
    Mode,
    ObjectEntry,
    ObjectRef,
    Response,
)
from drivers.cards.errors import (
    AppletNotFoundError,
    CardError,
    ChannelError,
    ResponseFormatError,
    StatusWordError,
    TransportError,
)
from drivers.cards.status import (
    PIN_TRIES_LEFT,
    SW,
    SW1_BYTES_REMAINING,
    SW1_CLA_FUNCTION,
    SW1_WRONG_LE,
    error_for,
    is_success,
    key_not_found,
)
from drivers.cards.trace import TraceEntry, TraceLog
from drivers.cards.transport import Transport

SIGN_SESSION = 0x01
"""Session number for signing (Orange, wolfSSL, at_talk); 00 is tried if the applet refuses."""
VERIFY_SESSION = 0x02
PUT_KEY_SESSION = 0x00
READ_CHUNK = 0xF0
"""READ FILE chunk: explicit Le, as Orange found Le=00 troubles some modems."""

_KEY_SWS = (SW.REFERENCE_NOT_FOUND, SW.REFERENCED_DATA_NOT_FOUND)


def _read_file(ref: ObjectRef, offset: int, length: int, cla: int) -> Command:
    """READ FILE with the CLA last, for :func:`functools.partial` in a chunk loop."""
    return apdu.read_file(cla, ref, offset, length)


class IoTSafeClient:
    """One logical channel to an IoT SAFE applet, with quirk handling and an APDU trace.

    ``cla_class`` is the class tried first for IoT SAFE commands (:data:`PROPRIETARY`, as
    wolfSSL and at_talk; Orange and Thales send :data:`ISO`); ``logical_channel=False`` uses
    the basic channel 0 instead of MANAGE CHANNEL (for readers that cannot open channels).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        aid: bytes = GSMA_AID,
        cla_class: int = PROPRIETARY,
        logical_channel: bool = True,
        sign_session: int = SIGN_SESSION,
        trace: TraceLog | None = None,
        field_bytes: int = apdu.FIELD_BYTES,
        read_chunk: int = READ_CHUNK,
    ) -> None:
        self.transport = transport
        self.aid = aid
        self.cla_class = cla_class
        self.logical_channel = logical_channel
        self.sign_session = sign_session
        self.trace = trace if trace is not None else TraceLog()
        self.field_bytes = field_bytes
        self.read_chunk = read_chunk
        self.channel: int | None = None
        self.selected = False
        self.open_sign_session: int | None = None
        """Session number of a COMPUTE SIGNATURE opened and not yet finished or closed."""

    # --------------------------------------------------------------------- raw exchange

    def exchange(self, command: Command, *, note: str = "") -> Response:
        """Send exactly one APDU and trace it; no SW handling."""
        raw = command.to_bytes()
        seq = self.trace.next_seq()
        start = time.perf_counter_ns()
        try:
            answer = self.transport.transmit(raw)
        except CardError:
            self._record(seq, raw, b"", start, time.perf_counter_ns() - start, note)
            raise
        except OSError as exc:
            self._record(seq, raw, b"", start, time.perf_counter_ns() - start, note)
            raise TransportError(
                f"{command.name}: the link to the card failed ({exc})",
                f"check the card link {self.transport.name}",
            ) from exc
        duration = time.perf_counter_ns() - start
        timing = getattr(self.transport, "last_timing", None)  # a modem's AT-layer share
        framing = getattr(timing, "framing_ns", None)
        self._record(seq, raw, answer, start, duration, note, framing)
        return apdu.parse_response(answer)

    def _record(
        self,
        seq: int,
        raw: bytes,
        answer: bytes,
        start: int,
        duration: int,
        note: str,
        framing: int | None = None,
    ) -> None:
        name, detail = apdu.describe_command(raw)
        sw = int.from_bytes(answer[-2:], "big") if len(answer) >= 2 else 0
        self.trace.append(
            TraceEntry(
                seq=seq,
                name=name,
                detail=detail,
                command=raw,
                response=bytes(answer),
                sw=sw,
                start_ns=start,
                duration_ns=duration,
                response_detail=apdu.describe_response(raw, answer),
                note=note,
                framing_ns=framing,
            )
        )

    def transmit(self, command: Command, *, note: str = "") -> Response:
        """Send a command, resolving ``6Cxx`` (resend) and ``61xx`` (GET RESPONSE)."""
        response = self.exchange(command, note=note)
        if response.sw1 == SW1_WRONG_LE:
            response = self.exchange(
                command.with_le(response.sw2), note=f"resend with Le {response.sw2:02X} after 6C"
            )
        data = response.data
        rounds = 0
        while response.sw1 == SW1_BYTES_REMAINING:
            rounds += 1
            if rounds > 256:
                raise ResponseFormatError(
                    f"{command.name}: the card kept answering 61xx", "reset the card"
                )
            follow = apdu.get_response(command.channel, response.sw2)
            response = self.exchange(follow, note=f"GET RESPONSE after {response.sw:04X}")
            data += response.data
        return Response(data, response.sw)

    def command(self, build: Callable[[int], Command], *, note: str = "") -> Response:
        """Send an IoT SAFE command built for a CLA, with the ``6E00`` class fallback.

        ``build`` gets the CLA byte (channel bits and class) and returns the command, so the
        retry is the same command in the other class.
        """
        channel = self._channel()
        response = self.transmit(build(apdu.cla_for(channel, self.cla_class)), note=note)
        if response.sw == SW.CLA_NOT_SUPPORTED:
            other = ISO if self.cla_class == PROPRIETARY else PROPRIETARY
            retry = self.transmit(
                build(apdu.cla_for(channel, other)),
                note=f"retry with CLA {apdu.cla_for(channel, other):02X} after 6E00",
            )
            if retry.sw != SW.CLA_NOT_SUPPORTED:
                self.cla_class = other
            response = retry
        return response

    def _channel(self) -> int:
        if self.channel is None:
            raise ChannelError(
                "no logical channel is open to the IoT SAFE applet",
                "open the client (MANAGE CHANNEL + SELECT) first",
            )
        return self.channel

    @staticmethod
    def _check(response: Response, name: str) -> Response:
        if not is_success(response.sw):
            raise error_for(response.sw, name)
        return response

    def _check_key(self, response: Response, name: str, what: str) -> Response:
        if response.sw in _KEY_SWS:
            raise key_not_found(response.sw, name, what)
        return self._check(response, name)

    # --------------------------------------------------------------------- channel & select

    @property
    def link_manages_channel(self) -> bool:
        """True when the transport opens channels itself (modem AT+CCHO/AT+CGLA)."""
        return bool(getattr(self.transport, "manages_channels", False))

    def open(self) -> None:
        """Open a logical channel (or use channel 0) and SELECT the applet on it.

        On a link that manages channels itself (:class:`ChannelManagingTransport`), the link
        opens the channel and selects the applet, and the client talks on "channel 0" whose
        CLA bits the link patches.
        """
        if self.link_manages_channel:
            self.transport.open_channel(self.aid)  # type: ignore[attr-defined]
            self.channel = 0
            self.selected = True
            return
        if self.logical_channel:
            self.open_channel()
        else:
            self.channel = 0
        self.select()

    def open_channel(self) -> int:
        """MANAGE CHANNEL open; the card chooses the channel number."""
        response = self.transmit(apdu.manage_channel_open())
        if response.sw1 == SW1_CLA_FUNCTION or response.sw in (
            SW.FUNCTION_NOT_SUPPORTED,
            SW.INS_NOT_SUPPORTED,
            SW.CLA_NOT_SUPPORTED,
        ):
            raise ChannelError(
                f"the card refused to open a logical channel ({response.sw:04X})",
                "use the basic channel (channel=0 in the token spec), or close stale channels",
                sw=response.sw,
                command="MANAGE CHANNEL",
            )
        self._check(response, "MANAGE CHANNEL")
        if len(response.data) != 1 or not 1 <= response.data[0] <= 19:
            raise ResponseFormatError(
                f"MANAGE CHANNEL answered {response.data.hex() or 'no channel number'}",
                "the card should answer one byte, the channel number 01-13",
            )
        self.channel = response.data[0]
        return self.channel

    def select(self, aid: bytes | None = None) -> bytes:
        """SELECT the applet by AID on the open channel; returns the FCI, if any."""
        aid = aid or self.aid
        response = self.transmit(apdu.select(self._channel(), aid))
        if response.sw in (SW.REFERENCE_NOT_FOUND, SW.SELECT_FAILED, SW.REFERENCED_DATA_NOT_FOUND):
            raise AppletNotFoundError(
                f"no applet with AID {aid.hex().upper()} on the card (SW {response.sw:04X})",
                "check the AID (aid=... in the token spec); the GSMA IoT SAFE AID is "
                f"{GSMA_AID.hex().upper()}, Thales uses {apdu.THALES_AID.hex().upper()}",
                sw=response.sw,
                command="SELECT",
            )
        self._check(response, "SELECT")
        self.aid = aid
        self.selected = True
        return response.data

    def close(self) -> None:
        """Close an open signature session and the channel; errors are traced, not raised."""
        if self.channel is None:
            return
        with contextlib.suppress(CardError):
            if self.open_sign_session is not None:
                self.sign_close(self.open_sign_session)
        with contextlib.suppress(CardError):
            if self.link_manages_channel:
                self.transport.close_channel()  # type: ignore[attr-defined]
            elif self.channel:
                self.transmit(apdu.manage_channel_close(self.channel))
        self.channel = None
        self.selected = False

    # --------------------------------------------------------------------- GET DATA & files

    def application_info(self) -> AppletInfo:
        """GET DATA application info (Le 00; a ``6Cxx`` answer is resent with the right Le)."""
        response = self.command(lambda cla: apdu.get_data(cla, GetDataP1.APPLICATION))
        return apdu.parse_application_info(self._check(response, "GET DATA").data)

    def object_list(self) -> list[ObjectEntry]:
        """GET DATA object list: every key and file the applet shows."""
        response = self.command(lambda cla: apdu.get_data(cla, GetDataP1.OBJECT_LIST))
        return apdu.parse_object_list(self._check(response, "GET DATA").data)

    def object_info(self, kind: str, ref: ObjectRef) -> ObjectEntry:
        """GET DATA ``C1``-``C4`` for one object (``kind`` private, public, file, secret)."""
        p1 = {
            "private": GetDataP1.PRIVATE_KEY,
            "public": GetDataP1.PUBLIC_KEY,
            "file": GetDataP1.FILE,
            "secret": GetDataP1.SECRET_KEY,
        }[kind]
        response = self.command(lambda cla: apdu.get_data(cla, p1, ref))
        if kind != "file":
            self._check_key(response, "GET DATA", f"{kind} key {ref}")
        self._check(response, "GET DATA")
        return apdu.parse_object_info(response.data, kind)

    def read_file(self, ref: ObjectRef, size: int | None = None) -> bytes:
        """The whole file: GET DATA file info for the size (unless given), then READ FILE chunks."""
        if size is None:
            entry = self.object_info("file", ref)
            if entry.file_size is None:
                raise ResponseFormatError(
                    f"GET DATA file info of file {ref} has no size (tag 20)", "give the size"
                )
            size = entry.file_size
        content = b""
        while len(content) < size:
            offset = len(content)
            length = min(self.read_chunk, size - offset)
            response = self.command(functools.partial(_read_file, ref, offset, length))
            self._check(response, "READ FILE")
            if not response.data:
                raise ResponseFormatError(
                    f"READ FILE of file {ref} at offset {offset} returned no data",
                    "the file may be shorter than its size says",
                )
            content += response.data
        return content[:size]

    # --------------------------------------------------------------------- signatures

    def sign_init(
        self, key: ObjectRef, mode: Mode = Mode.FINAL_HASH, session: int | None = None
    ) -> int:
        """COMPUTE SIGNATURE INIT; returns the session number actually used.

        A stale open session (``6985``) is closed and the INIT retried once; a refused
        session number (``6A86``) is swapped 00 ↔ 01 once and kept for next time.
        """
        session = self.sign_session if session is None else session
        name = "COMPUTE SIGNATURE INIT"

        def init(number: int, note: str = "") -> Response:
            return self.command(
                lambda cla: apdu.compute_signature_init(cla, number, key, mode), note=note
            )

        response = init(session)
        if response.sw == SW.INCORRECT_P1P2 and session in (0, 1):
            other = 1 - session
            response = init(other, note=f"retry with session {other:02X} after 6A86")
            if is_success(response.sw):
                session = self.sign_session = other
        if response.sw == SW.CONDITIONS_NOT_SATISFIED:
            self._close_session(session, note="close stale session after 6985")
            response = init(session, note="retry after closing the stale session")
        self._check_key(response, name, f"private key {key}")
        self.open_sign_session = session
        return session

    def _close_session(self, session: int, note: str = "") -> Response:
        return self.command(lambda cla: apdu.compute_signature_close(cla, session), note=note)

    def sign_close(self, session: int | None = None) -> None:
        """Close a COMPUTE SIGNATURE session (``2A 01 <sess>``)."""
        session = self.open_sign_session if session is None else session
        if session is None:
            session = self.sign_session
        response = self._close_session(session)
        self.open_sign_session = None
        self._check(response, "COMPUTE SIGNATURE INIT (close)")

    def sign_final_hash(self, digest: bytes, session: int | None = None) -> bytes:
        """COMPUTE SIGNATURE UPDATE with the host's digest (tag ``9E``); returns raw r‖s."""
        session = self._sign_session(session)
        response = self.command(
            lambda cla: apdu.compute_signature_update_final_hash(cla, session, digest)
        )
        return self._signature(response)

    def sign_full_text(self, message: bytes, session: int | None = None) -> bytes:
        """COMPUTE SIGNATURE UPDATE with the message (tag ``9B``, chunked); returns raw r‖s."""
        session = self._sign_session(session)
        commands = apdu.compute_signature_update_full_text(0, session, message)
        response: Response | None = None
        for template in commands:
            response = self.command(template.with_cla)
            if template.p1 != 0x80:
                self._check(response, "COMPUTE SIGNATURE UPDATE")
        assert response is not None
        return self._signature(response)

    def sign_last_block(self, message: bytes, session: int | None = None) -> bytes:
        """COMPUTE SIGNATURE UPDATE in last-block mode (``9A``/``9C``/``9D``); raw r‖s."""
        session = self._sign_session(session)
        state, hashed, tail = sha256_state.split_for_last_block(message)
        response = self.command(
            lambda cla: apdu.compute_signature_update_last_block(cla, session, tail, state, hashed)
        )
        return self._signature(response)

    def _sign_session(self, session: int | None) -> int:
        if session is not None:
            return session
        return self.open_sign_session if self.open_sign_session is not None else self.sign_session

    def _signature(self, response: Response) -> bytes:
        self.open_sign_session = None
        self._check(response, "COMPUTE SIGNATURE UPDATE")
        return apdu.parse_signature(response.data, self.field_bytes)

    def sign_digest(self, key: ObjectRef, digest: bytes) -> bytes:
        """INIT (final hash) + UPDATE: the hash-on-host signature of the reference; raw r‖s."""
        session = self.sign_init(key, Mode.FINAL_HASH)
        return self.sign_final_hash(digest, session)

    def verify(
        self,
        key: ObjectRef,
        signature: bytes,
        *,
        digest: bytes | None = None,
        message: bytes | None = None,
        session: int = VERIFY_SESSION,
    ) -> bool:
        """VERIFY SIGNATURE INIT + UPDATE; ``False`` on ``6D01`` (signature mismatch)."""
        mode = Mode.FINAL_HASH if digest is not None else Mode.FULL_TEXT
        response = self.command(lambda cla: apdu.verify_signature_init(cla, session, key, mode))
        self._check_key(response, "VERIFY SIGNATURE INIT", f"public key {key}")
        response = self.command(
            lambda cla: apdu.verify_signature_update(
                cla, session, signature, digest=digest, message=message
            )
        )
        if response.sw == SW.SIGNATURE_MISMATCH:
            return False
        self._check(response, "VERIFY SIGNATURE UPDATE")
        return True

    # --------------------------------------------------------------------- other commands

    def get_random(self, length: int) -> bytes:
        """GET RANDOM of ``length`` bytes (1-256)."""
        response = self._check(self.command(lambda cla: apdu.get_random(cla, length)), "GET RANDOM")
        if len(response.data) != length:
            raise ResponseFormatError(
                f"GET RANDOM returned {len(response.data)} bytes, asked {length}",
                "see the APDU trace",
            )
        return response.data

    def generate_key_pair(self, key: ObjectRef) -> GeneratedKey:
        """GENERATE KEY PAIR in a private key slot; the applet may change the ID."""
        response = self.command(lambda cla: apdu.generate_key_pair(cla, key))
        self._check_key(response, "GENERATE KEY PAIR", f"private key slot {key}")
        return apdu.parse_generated_key(response.data)

    def read_public_key(self, key: ObjectRef) -> bytes:
        """READ PUBLIC KEY: the uncompressed point ``04||X||Y``."""
        response = self.command(lambda cla: apdu.read_public_key(cla, key))
        self._check_key(response, "READ PUBLIC KEY", f"public key {key}")
        return apdu.parse_public_key(response.data)

    def put_public_key(self, key: ObjectRef, point: bytes, session: int = PUT_KEY_SESSION) -> None:
        """PUT PUBLIC KEY INIT + UPDATE(s) + close: store a peer's public key in a slot."""
        response = self.command(lambda cla: apdu.put_public_key_init(cla, session, key))
        self._check_key(response, "PUT PUBLIC KEY INIT", f"public key slot {key}")
        try:
            for template in apdu.put_public_key_update(0, session, point):
                response = self.command(template.with_cla)
                self._check(response, "PUT PUBLIC KEY UPDATE")
        finally:
            with contextlib.suppress(StatusWordError):
                self._check(
                    self.command(lambda cla: apdu.put_public_key_close(cla, session)),
                    "PUT PUBLIC KEY INIT (close)",
                )

    def compute_dh(self, private_key: ObjectRef, public_key: ObjectRef) -> bytes:
        """COMPUTE DH (ECKA): the shared secret (X coordinate) of a private and a public key."""
        response = self.command(lambda cla: apdu.compute_dh(cla, private_key, public_key))
        if response.sw in _KEY_SWS:
            raise key_not_found(response.sw, "COMPUTE DH", f"key {private_key} or {public_key}")
        return self._check(response, "COMPUTE DH").data

    def verify_pin(self, pin: bytes) -> None:
        """ISO VERIFY of the SIM PIN. A refusal raises :class:`CardPinError`; never retried."""
        response = self.transmit(apdu.verify_pin(self._channel(), pin))
        self._check(response, "VERIFY PIN")

    def pin_tries_left(self) -> int | None:
        """Tries left from an empty VERIFY (``63Cx``); ``None`` when already verified/no PIN."""
        response = self.transmit(apdu.verify_pin(self._channel(), b""))
        if response.sw & 0xFFF0 == PIN_TRIES_LEFT:
            return response.sw & 0x0F
        if response.sw == SW.PIN_BLOCKED:
            return 0
        return None
