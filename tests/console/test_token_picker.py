"""The token picker: every token discovery finds, details, selection, PIN check and errors."""

from __future__ import annotations

import pytest
from textual.widgets import OptionList

from console.app import SafeLabApp
from screens.lab import Lab
from screens.pin import PinModal
from screens.tokens import TokenPickerScreen
from tests.console.conftest import run, text_of, wait_for


def _picker(app: SafeLabApp) -> TokenPickerScreen:
    assert isinstance(app.screen, TokenPickerScreen)
    return app.screen


async def _highlight(pilot, uri: str) -> None:
    """Move the list's cursor with the arrow keys until ``uri`` is highlighted."""
    option_list = pilot.app.screen.query_one("#token-list", OptionList)
    option_list.focus()
    await pilot.press("home")
    for _ in range(option_list.option_count):
        option = option_list.highlighted_option
        if option is not None and option.id == uri:
            return
        await pilot.press("down")
    raise AssertionError(f"{uri} is not in the token list")


def test_builtin_tokens_listed_with_details(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TokenPickerScreen))
            picker = _picker(app)
            await wait_for(pilot, lambda: bool(picker.entries), what="discovery")
            assert {"software:secp256r1", "software:brainpoolP256r1"} <= set(picker.entries)
            await _highlight(pilot, "software:brainpoolP256r1")
            details = text_of(picker.query_one("#details"))
            assert "brainpoolP256r1" in details
            assert "real key" in details and "not needed" in details and "no PIN" not in details
            await pilot.press("u")
            assert lab.token.uri == "software:brainpoolP256r1"
            await pilot.press("l")
            await wait_for(pilot, lambda: "needs no PIN" in str(picker.status.render()))

    run(body())


@pytest.mark.softhsm
def test_softhsm_token_found_picked_and_pin_checked(lab: Lab, softhsm) -> None:
    async def body() -> None:
        app = SafeLabApp(lab)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TokenPickerScreen))
            picker = _picker(app)
            await wait_for(pilot, lambda: bool(picker.entries), what="discovery")
            uri = next(u for u, (e, _) in picker.entries.items() if e.label == softhsm.label)
            await _highlight(pilot, uri)
            await wait_for(pilot, lambda: uri in picker.certificates, what="certificate")
            details = text_of(picker.query_one("#details"))
            assert "real PKCS#11 token" in details and "libsofthsm2.so" in details
            assert "subject CN=dev" in details and "issuer  CN=SAFE Lab test CA" in details
            await pilot.press("enter")
            assert lab.token.uri == uri and lab.token.kind == "pkcs11"

            # A wrong PIN: one error line with the tries left; nothing retried.
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, PinModal), what="PIN modal")
            await pilot.press(*"0000", "enter")
            await wait_for(pilot, lambda: picker.status.has_class("-error"), what="PIN error")
            status = str(picker.status.render())
            assert "wrong PIN" in status and "tries left: count low" in status
            assert app.screen is picker

            # The modal now shows the token's warning; cancel returns cleanly.
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, PinModal))
            assert "count low" in str(app.screen.query_one("#pin-status").render())
            await pilot.press("escape")
            await wait_for(pilot, lambda: "cancelled" in str(picker.status.render()))
            assert app.screen is picker

            # The right PIN (which also clears the token's count-low flag for later tests).
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, PinModal))
            await pilot.press(*softhsm.pin, "enter")
            await wait_for(pilot, lambda: "PIN accepted" in str(picker.status.render()))
            assert "ok" in str(picker.status.render())

    run(body())


def test_emulated_card_details_agree_and_an_empty_module_is_explained(lab: Lab) -> None:
    """The card's PIN row and key list tell one story (keys read from the card, no PIN
    needed); a module with no slots says why instead of showing a bare header."""
    from drivers.tokens.discovery import Discovery, ModuleEntry, discover_builtin
    from tests.console.conftest import emulated_cards

    opensc = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"

    def discovery() -> Discovery:
        return Discovery(
            builtin=tuple(discover_builtin()),
            cards=tuple(emulated_cards()),
            modules=(ModuleEntry(path=opensc, description="OpenSC smartcard framework 0.23"),),
        )

    lab.discover = discovery
    uri = "iotsafe:emulated;profile=paper-sim"

    async def body() -> None:
        app = SafeLabApp(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TokenPickerScreen))
            picker = _picker(app)
            await wait_for(pilot, lambda: bool(picker.entries), what="discovery")
            await _highlight(pilot, uri)
            await wait_for(pilot, lambda: uri in picker.opened_keys, what="keys read")
            details = text_of(picker.query_one("#details"))
            assert "not needed" in details and "no PIN" not in details
            assert "without a PIN" not in details
            assert "client" in details and "secp256r1" in details  # keys from the card
            assert "speed" in details and "f: ×1, ×0.1, ×0.01" in details
            prompts = [
                str(option.prompt) for option in picker.query_one("#token-list", OptionList).options
            ]
            header = prompts.index("PKCS#11 opensc-pkcs11.so")
            assert "no slots" in prompts[header + 1]
            assert picker.query_one("#token-list", OptionList).options[header + 1].disabled

    run(body())
