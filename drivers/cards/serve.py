"""``safelab card serve``: the emulated IoT SAFE card in a virtual PC/SC reader and/or a modem.

The same emulator the in-process token uses is put where real cards are: into vpcd's virtual
reader (so pyscard, pcsc_scan, OpenSC and SAFE Lab's ``iotsafe:pcsc`` see a card in a real
PC/SC stack) and, on request, behind a modem on a pseudo-terminal (``iotsafe:modem``). Its ATR
and its modem identity carry the emulator's mark, so every result made through it is labelled
emulated. One lock serialises APDUs from both links, as one card would.

Vendor host stacks select their own applet AID (a proprietary 15-byte one, say): ``aids``
makes the applet answer under those as well as the GSMA AID, and every SELECT of an AID the
card does not host is reported through ``log`` with the AID asked for, so whoever runs
``card serve`` sees at once why a vendor stack finds nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drivers.cards.atr import EMULATOR_ATR, EMULATOR_MARK
from drivers.cards.emulator import IoTSafeApplet, shared_card
from drivers.cards.emulator.persist import card_path, save_card
from drivers.cards.emulator.store import LAB_PIN
from drivers.cards.errors import TransportError
from drivers.cards.iotsafe_token import IoTSafeOptions, emulated_token
from drivers.cards.modem_sim import PtyModem
from drivers.cards.pcsc import list_readers
from drivers.cards.serve_trace import ApduRecorder, trace_path
from drivers.cards.vpcd import VPCD_PORT, VirtualCard

_CHANGING_INS = frozenset({0xB9, 0xD8, 0x20})
"""GENERATE KEY PAIR, PUT PUBLIC KEY UPDATE, VERIFY (PIN tries): saved when they succeed."""


@dataclass
class ServedCard:
    """A running emulated card; :attr:`uris` are the token specs that reach it."""

    applet: IoTSafeApplet
    description: str
    uris: list[str] = field(default_factory=list)
    virtual_card: VirtualCard | None = None
    modem: PtyModem | None = None
    reader: str | None = None
    card_file: Path | None = None
    """Where the card's keys and objects are kept between starts."""
    applet_calls: int = 0
    """APDUs the card has answered, over every link."""
    recorder: ApduRecorder | None = None
    """Every APDU received, timed and decoded (``safelab card trace`` shows it)."""

    def stop(self) -> None:
        if self.virtual_card is not None:
            self.virtual_card.remove()
        if self.modem is not None:
            self.modem.stop()
        if self.recorder is not None:
            self.recorder.close()


def serve_emulated_card(
    options: IoTSafeOptions,
    *,
    pcsc: bool = True,
    vpcd_port: int = VPCD_PORT,
    modem: bool = False,
    reader_timeout_s: float = 10.0,
    aids: tuple[bytes, ...] = (),
    log: Callable[[str], None] = lambda line: None,
    fresh: bool = False,
) -> ServedCard:
    """Start the emulated card described by ``options`` on the links asked for.

    ``aids``: more AIDs the applet answers under; ``log``: told one line per event the user
    should see (an unknown AID selected). The card named ``options.card`` keeps its keys in
    the data directory across starts; ``fresh`` provisions new ones. Commands that change
    the card (GENERATE KEY PAIR, PUT PUBLIC KEY, VERIFY PIN) are saved as they happen.
    """
    pin = LAB_PIN if options.login else None
    store = shared_card(options.card, options.curves, pin=pin, fresh=fresh)
    token = emulated_token(options)
    applet = token.applet
    assert applet is not None
    for aid in aids:
        applet.host_aid(aid)

    reported: set[bytes] = set()

    def unknown_aid(asked: bytes) -> None:
        if asked in reported:  # once per AID: OpenSC alone probes dozens at every look
            return
        reported.add(asked)
        hosted = ", ".join(aid.hex().upper() for aid in applet.aids)
        log(
            f"SELECT of AID {asked.hex().upper()}, which this card does not host: answered "
            f"6A82 (it hosts {hosted}; add --aid {asked.hex().upper()} to answer under it)"
        )

    applet.on_unknown_aid = unknown_aid
    lock = threading.Lock()
    served = ServedCard(applet, token.info.label, card_file=card_path(options.card))

    recorder = served.recorder = ApduRecorder(trace_path(options.card))

    def processor(link: str) -> Callable[[bytes], bytes]:
        def process(apdu: bytes) -> bytes:
            with lock:
                arrived_ns, arrived_at = time.perf_counter_ns(), time.time()
                served.applet_calls += 1
                response = applet.process_apdu(apdu)
                answered_ns = time.perf_counter_ns()
                sample = applet.samples[-1] if applet.samples else None
                recorder.record(
                    link,
                    apdu,
                    response,
                    arrived_ns=arrived_ns,
                    arrived_at=arrived_at,
                    answered_ns=answered_ns,
                    card_ms=sample.card_ms * applet.speed if sample else 0.0,
                    link_ms=sample.transport_ms * applet.speed if sample else 0.0,
                )
                if len(apdu) >= 2 and apdu[1] in _CHANGING_INS and response[-2:] == b"\x90\x00":
                    save_card(options.card, store, options.curves)
                return response

        return process

    def reset() -> None:
        with lock:
            applet.reset()

    try:
        if pcsc:
            card = VirtualCard(
                processor("pcsc"),
                EMULATOR_ATR,
                port=vpcd_port,
                on_reset=reset,
                connect_timeout_s=3.0,
            )
            served.virtual_card = card.insert()
            served.reader = _reader_showing_the_card(reader_timeout_s)
            served.uris.append(f"iotsafe:pcsc;reader={served.reader}")
        if modem:
            served.modem = PtyModem(
                processor("modem"), identity=f"SAFE Lab pty modem, card {EMULATOR_MARK.decode()}"
            ).start()
            served.uris.append(f"iotsafe:modem;port={served.modem.port};mode=csim")
            served.uris.append(f"iotsafe:modem;port={served.modem.port};mode=cgla")
    except BaseException:
        served.stop()
        raise
    return served


def _reader_showing_the_card(timeout_s: float) -> str:
    """The reader whose card has the emulator's ATR, once pcscd has noticed it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for reader in list_readers():
            if reader.card_present and reader.atr == EMULATOR_ATR:
                return reader.name
        time.sleep(0.1)
    raise TransportError(
        "the emulated card is connected to vpcd but no PC/SC reader shows it",
        "check that pcscd runs with the vpcd driver (`pcsc_scan` lists 'Virtual PCD')",
    )
