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
"""The ``safelab`` command of this interpreter (never a bare ``python``)."""


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[list[str], Any]]:
    """``safelab card serve ARGS`` in the background until the block ends (SIGINT, then wait).

    Yields the token specs it printed and the process; its stdout after the specs is left
    for the caller (``process.communicate``).
    """
    process = subprocess.Popen(
        [*SAFELAB, "card", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    uris: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"--token '(.+)'", line)
        if match:
            uris.append(match.group(1))
        if "Ctrl-C" in line:
            break
    try:
        if process.poll() is not None:
            error = process.stderr.read() if process.stderr else ""
            pytest.fail(f"card serve ended early: {error}")
        yield uris, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
