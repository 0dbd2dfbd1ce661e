"""Fixtures of the card tests: a provisioned emulated card, an applet without delays, a client.

The applet runs with the built-in ``instant`` profile and ``speed=0``: functional tests never
wait and never depend on the wall clock.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.cards.atr import EMULATOR_ATR
from drivers.cards.client import IoTSafeClient
from drivers.cards.emulator import (
    INSTANT,
    CardStore,
    InProcessTransport,
    IoTSafeApplet,
    provision_lab_card,
)
from drivers.cards.errors import TransportError
from drivers.cards.modem import ModemTransport
from drivers.cards.modem_sim import PtyModem
from drivers.cards.pcsc import PcscTransport
from drivers.cards.vpcd import VirtualCard

PAPER_DATA = b"12345678901234567890123456789012"


@pytest.fixture(scope="session")
def card_store() -> CardStore:
    """One provisioned card (P-256 and brainpool keys) shared by the read-only tests."""
    return provision_lab_card(("secp256r1", "brainpoolP256r1"))


def make_client(store: CardStore, **quirks: object) -> tuple[IoTSafeClient, IoTSafeApplet]:
    profile = INSTANT.with_quirks(**quirks) if quirks else INSTANT
    applet = IoTSafeApplet(store, profile, speed=0)
    return IoTSafeClient(InProcessTransport(applet)), applet


@pytest.fixture
def fresh_store() -> CardStore:
    """A card of its own, for tests that change keys or PIN state."""
    return provision_lab_card(("secp256r1",))


LINKS = ("in-process", "pcsc", "modem-csim", "modem-cgla")
"""Every way the client reaches a card: in-process, a real PC/SC stack (pcscd + vpcd +
pyscard), and a modem on a pseudo-terminal with AT+CSIM or AT+CCHO/AT+CGLA."""


@contextlib.contextmanager
def card_link(kind: str, applet: IoTSafeApplet, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A transport of ``kind`` to ``applet``; the card is removed and the link closed after."""
    if kind == "in-process":
        yield InProcessTransport(applet)
        return
    if kind == "pcsc":
        reader = request.getfixturevalue("pcscd")
        card = VirtualCard(applet.process_apdu, EMULATOR_ATR, on_reset=applet.reset).insert()
        try:
            transport = connect_reader(reader)
            try:
                yield transport
            finally:
                transport.close()
        finally:
            card.remove()
        return
    modem = PtyModem(applet.process_apdu).start()
    try:
        transport = ModemTransport(
            modem.port, mode=kind.removeprefix("modem-"), command_timeout_s=5
        )
        try:
            yield transport
        finally:
            transport.close()
    finally:
        modem.stop()


def connect_reader(reader: str, timeout_s: float = 10.0) -> PcscTransport:
    """Connect once pcscd has noticed the card that was just inserted."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return PcscTransport(reader)
        except TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(params=LINKS)
def client(card_store: CardStore, request: pytest.FixtureRequest) -> Iterator[IoTSafeClient]:
    """An open client on the shared card, over each kind of link in turn."""
    applet = IoTSafeApplet(card_store, INSTANT, speed=0)
    with card_link(request.param, applet, request) as transport:
        client = IoTSafeClient(transport)
        client.open()
        yield client
        client.close()


SAFELAB = [sys.executable, "-m", "console"]
SERVE_PORT = 35964
"""The ``safelab`` command of this interpreter (never a bare ``python``)."""


class Served:
    """A running ``card serve``: its token specs, its process, and all it printed so far.

    Its stdout is drained by a thread all along: a served card that logs (unknown AIDs, say)
    into a pipe nobody reads would block once the pipe is full, and with it the card.
    """

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.uris: list[str] = []
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(r"--token '(.+)'", line)
            if match:
                self.uris.append(match.group(1))
            if "Ctrl-C" in line:
                self._ready.set()
        self._ready.set()

    @property
    def reader(self) -> str:
        return self.uris[0].removeprefix("iotsafe:pcsc;reader=")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        self._ready.wait(timeout_s)
        if self.process.poll() is not None or not self.uris:
            error = self.process.stderr.read() if self.process.stderr else ""
            pytest.fail(f"card serve did not start: {''.join(self.lines)}{error}")

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> str:
        """Send ``sig``, wait for the exit; everything printed."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
        return "".join(self.lines)


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``safelab card serve ARGS`` in the background until the block ends (SIGINT, then wait).

    Served in vpcd's second reader (port 35964, ``Virtual PCD 00 01``) unless ARGS say
    otherwise, so it does not compete with the tests that insert cards into the first.
    """
    if "--vpcd-port" not in args:
        args = ("--vpcd-port", str(SERVE_PORT), *args)
    process = subprocess.Popen(
        [*SAFELAB, "card", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    served = Served(process)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()
