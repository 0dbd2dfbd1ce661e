"""Fixtures of the card tests: a provisioned emulated card, an applet without delays, a client.

The applet runs with the built-in ``instant`` profile and ``speed=0``: functional tests never
wait and never depend on the wall clock.
"""

from __future__ import annotations

import pytest

from drivers.cards.client import IoTSafeClient
from drivers.cards.emulator import (
    INSTANT,
    CardStore,
    InProcessTransport,
    IoTSafeApplet,
    provision_lab_card,
)

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


@pytest.fixture
def client(card_store: CardStore) -> IoTSafeClient:
    client, _ = make_client(card_store)
    client.open()
    yield client
    client.close()
