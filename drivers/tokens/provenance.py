"""Is a token's key on SAFE Lab's emulated card? Decided from the card, whatever the path to it.

Results made on the emulator must never pass for hardware, whichever way the host reached it:
SAFE Lab's own IoT SAFE client (the emulator in process, a PC/SC reader, a modem), or any
PKCS#11 module (a vendor's IoT SAFE provider, OpenSC) whose slot is a PC/SC reader. A PKCS#11
module does not pass the card's ATR on, but its slot description names the reader (OpenSC
and pcsc-lite based providers use the reader name), and the reader's ATR can be read from
pcscd without connecting to the card (:func:`drivers.cards.pcsc.list_readers`). A card whose
ATR carries the emulator's mark (``SAFELABEMU``) is the emulator.
"""

from __future__ import annotations

from drivers.errors import SafeLabError


def emulated_reader_for_slot(slot_description: str) -> str | None:
    """The PC/SC reader the slot names, if it holds the emulated card; else ``None``.

    The slot matches a reader whose name equals the description or appears in it (some
    providers add a suffix such as ``(slot 0)``). No pcscd, or no such reader: ``None``.
    """
    from drivers.cards.atr import is_emulator_atr
    from drivers.cards.pcsc import list_readers

    description = slot_description.strip()
    if not description:
        return None
    try:
        readers = list_readers()
    except SafeLabError:
        return None
    for reader in readers:
        named = reader.name == description or reader.name in description
        if named and reader.card_present and is_emulator_atr(reader.atr):
            return reader.name
    return None
