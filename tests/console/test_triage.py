"""Triage: a clear placeholder without a card driver; with checks, each row as it completes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from textual.widgets import Input

from console.app import SafeLabApp
from drivers.bench.runner import PAPER_DATA
from drivers.tokens.base import HashOn, Token
from screens.dialogs import SavePathModal
from screens.lab import Lab
from screens.triage import TriageScreen
from tests.console.conftest import run, text_of, wait_for


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str
    detail: str


def token_checks(token: Token) -> Iterator[Check]:
    """Real checks of a token through the driver interface (what a card triage will extend)."""
    keys = token.keys()
    yield Check("keys", "PASS" if keys else "FAIL", f"{len(keys)} key(s) visible")
    with token.open() as session:
        session.login(None)
        key = session.find_key()
        session.sign_init(key, HashOn.HOST)
        signature = session.sign(PAPER_DATA)
    ok = signature.verify(token.public_key(), PAPER_DATA, HashOn.HOST)
    yield Check("signature", "PASS" if ok else "FAIL", "verifies against the public key")
    curve = token.public_key().curve
    yield Check("curve", "PASS" if isinstance(curve, ec.SECP256R1) else "WARN", f"{curve.name}")
    yield Check("certificate", "WARN" if token.certificate() is None else "PASS", "none stored")


def test_placeholder_without_a_card_driver(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="triage")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TriageScreen))
            screen = app.screen
            assert screen.query_one("#placeholder").display
            assert not screen.query_one("#checks").display
            assert "IoT SAFE card (coming)" in text_of(screen.query_one("#placeholder"))
            await pilot.press("r")
            await pilot.pause(0.2)
            assert screen.rows == []

    run(body())


def test_checks_appear_then_copy_and_save(lab: Lab) -> None:
    lab.triage = token_checks

    async def body() -> None:
        app = SafeLabApp(lab, start="triage")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TriageScreen))
            screen = app.screen
            assert not screen.query_one("#placeholder").display
            await pilot.press("r")
            await wait_for(pilot, lambda: not screen.running and len(screen.rows) == 4)
            verdicts = {row.name: row.verdict for row in screen.rows}
            assert verdicts == {
                "keys": "PASS",
                "signature": "PASS",
                "curve": "PASS",
                "certificate": "WARN",
            }
            overall = text_of(screen.query_one("#overall").render())
            assert "overall  WARN" in overall and "3 PASS, 1 WARN" in overall
            await pilot.press("y")
            report = json.loads(app.clipboard)
            assert report["token"] == lab.token.uri and len(report["checks"]) == 4
            assert report["overall"] == "WARN"
            # w asks where, proposing the export directory; the full path is shown after.
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, SavePathModal))
            field = app.screen.query_one("#save-path", Input)
            default = lab.export_dir / "safelab-triage-software-secp256r1.json"
            assert field.value == str(default)
            elsewhere = lab.export_dir / "deep" / "er" / "a-very-long-file-name-for-the-report.json"
            field.value = str(elsewhere)
            await pilot.press("enter")
            await wait_for(pilot, lambda: elsewhere.exists(), what="saved report")
            assert json.loads(elsewhere.read_text()) == report
            assert not default.exists()
            await wait_for(pilot, lambda: "saved to" in text_of(screen.query_one("#check-detail")))
            shown = text_of(screen.query_one("#check-detail"), width=80).replace("\n", "")
            assert str(elsewhere.resolve()) in shown.replace(" ", "")
            await pilot.press("r")  # re-run replaces the rows
            await wait_for(pilot, lambda: not screen.running and len(screen.rows) == 4)

    run(body())


def test_card_with_a_sim_pin_is_asked_once(lab: Lab) -> None:
    """A card spec with login=verify: the PIN modal appears, then every check runs with it."""
    from drivers.cards.emulator.store import LAB_PIN
    from drivers.cards.triage import run_triage
    from screens.lab import TokenChoice

    lab.triage = run_triage
    lab.token = TokenChoice(
        "iotsafe:emulated;speed=0;login=verify;card=pin-card",
        "emulated card with PIN",
        "iotsafe",
        emulated=True,
    )

    async def body() -> None:
        app = SafeLabApp(lab, start="triage")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TriageScreen))
            screen = app.screen
            await pilot.press("r")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "PinModal")
            await pilot.press(*LAB_PIN, "enter")
            await wait_for(pilot, lambda: not screen.running and len(screen.rows) >= 6, timeout=30)
            verdicts = {row.name: row.verdict for row in screen.rows}
            assert verdicts["signature"] == "PASS" and verdicts["latency"] == "PASS"

    run(body())


def test_triage_checks_its_own_card_with_a_marker_while_running(lab: Lab) -> None:
    """The token in use is a software key; triage picks an emulated card of its own."""
    from drivers.cards.triage import run_triage

    lab.triage = run_triage
    card = "iotsafe:emulated;profile=paper-sim"

    async def body() -> None:
        app = SafeLabApp(lab, start="triage")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TriageScreen))
            screen = app.screen
            await wait_for(pilot, lambda: bool(screen.cards), what="cards")
            screen.query_one("#triage-token").value = card
            await wait_for(pilot, lambda: screen.choice == card)
            assert lab.token.kind == "software"  # the token in use is untouched
            await pilot.press("r")
            table = screen.query_one("#checks")
            seen_marker = False

            def progressed() -> bool:
                nonlocal seen_marker
                if screen.rows and "running" in table.rows:
                    seen_marker = True
                    assert table.get_row_index("running") == len(screen.rows)  # last row
                    assert "checking" in text_of(screen.query_one("#overall").render())
                return not screen.running and len(screen.rows) >= 6

            await wait_for(pilot, progressed, timeout=60, what="triage of the card")
            assert seen_marker and "running" not in table.rows
            assert screen.checked_uri == card
            verdicts = {row.name: row.verdict for row in screen.rows}
            assert verdicts["link"] == "PASS" and verdicts["signature"] == "PASS"
            overall = text_of(screen.query_one("#overall").render())
            assert f"overall  {screen.report()['overall']}" in overall

    run(body())
