"""The SSDTF packet stepper end to end: a real flow on the embedded broker, a real attack.

The live test steps a model-1 flow (one sensor, one message, the software key) packet by
packet through the tap, watches rows, verdicts and the keys panel change, runs it to the end
and exports JSON and pcap; the attack test runs ``replay`` and checks the rejecting packet and
reason are shown. The snapshots show the idle screen (no run, so no timings).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from console.app import SafeLabApp
from drivers.errors import SafeLabError
from drivers.runs import RunHandle
from screens.dialogs import ConfirmQuit
from screens.lab import Lab
from screens.ssdtf import (
    AttackMenu,
    SsdtfScreen,
    TracePathModal,
    attack_names,
    export_paths,
    parse_form,
)
from tests.console.conftest import run, text_of, wait_for
from tests.console.test_snapshots import SIZES, fixed_lab  # noqa: F401 - fixture


def _screen(app: SafeLabApp) -> SsdtfScreen:
    screen = app.screen
    assert isinstance(screen, SsdtfScreen)
    return screen


class _LeftByAnError(Exception):
    """What the test raises to leave the app the way a crash or a failing test does."""


async def _held_flow(pilot, app: SafeLabApp) -> RunHandle:
    """Start a live flow from the idle SSDTF screen; its handle once packet #0 is held."""
    await wait_for(pilot, lambda: isinstance(app.screen, SsdtfScreen))
    screen = _screen(app)
    assert not screen.running
    await pilot.press("s")
    await wait_for(pilot, lambda: bool(screen.rows), what="first held packet")
    assert screen.rows[-1].status == "held" and screen.handle is not None
    return screen.handle


def test_leaving_the_app_by_an_error_releases_a_held_flow(lab: Lab) -> None:
    """Only the quit key stopped runs: an app closed by an error left a live flow held at a
    packet, whose thread then kept the process waiting for its one-hour stepping deadline.
    Now unmounting the screen stops the run, and the flow runs to its end at once."""
    handles = []

    async def body() -> None:
        app = SafeLabApp(lab, start="ssdtf")
        async with app.run_test(size=(80, 24)) as pilot:
            handles.append(await _held_flow(pilot, app))
            raise _LeftByAnError

    with pytest.raises(_LeftByAnError):
        run(body())  # returns only once the flow's thread has ended
    assert handles and handles[0].stopped


def test_quitting_during_a_held_flow_asks_first_then_stops_it(lab: Lab) -> None:
    handles = []

    async def body() -> None:
        app = SafeLabApp(lab, start="ssdtf")
        async with app.run_test(size=(80, 24)) as pilot:
            handles.append(await _held_flow(pilot, app))
            assert _screen(app).running
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="ask")
            await pilot.press("y")
            await wait_for(pilot, lambda: handles[0].stopped, what="the flow stopped")

    run(body())
    assert handles[0].stopped


def test_form_and_paths() -> None:
    assert parse_form("2", "1", "3").model == 2
    for args, words in (
        (("4", "1", "1"), "model 4"),
        (("1", "0", "1"), "sensors"),
        (("x", "1", "1"), "whole numbers"),
    ):
        with pytest.raises(SafeLabError, match=words):
            parse_form(*args)
    assert export_paths(Path("/d/run.json")) == (Path("/d/run.json"), Path("/d/run.pcap"))
    assert export_paths(Path("/d/run.v1")) == (Path("/d/run.v1.json"), Path("/d/run.v1.pcap"))
    names = [name for name, *_ in attack_names()]
    from drivers.ssdtf.attacks import ATTACKS

    assert len(names) == len(ATTACKS) >= 33 and "replay" in names  # 30+ attacks, 3 controls


def test_live_flow_steps_keys_run_to_end_and_export(lab: Lab, tmp_path: Path) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="ssdtf")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SsdtfScreen))
            screen = _screen(app)
            idle_keys = screen.keys_shown()
            await pilot.press("s")
            await wait_for(pilot, lambda: bool(screen.rows), what="first held packet")
            assert screen.rows[-1].status == "held" and screen.rows[-1].mqtt_type == "CONNECT"
            assert "HELD" in text_of(screen.query_one("#info"))
            assert screen.keys_shown() != idle_keys

            # Step through the registrations (REG to the MS, PROV to gateway and DS, each
            # judged by its receiver) until the gateway has judged the HELLO.
            def hello_judged() -> bool:
                return any(r.ssdtf_type == "HELLO" and r.verdicts for r in screen.rows)

            for _ in range(120):
                count = len(screen.rows)
                await pilot.press("n")
                await wait_for(pilot, lambda c=count: len(screen.rows) > c, what="next packet")
                if hello_judged():
                    break
            regs = [r for r in screen.rows if r.ssdtf_type == "REG" and r.verdicts]
            assert regs and all(v.ok and v.role == "ms" for r in regs for v in r.verdicts)
            assert any(r.ssdtf_type == "PROV" and r.verdicts for r in screen.rows)
            judged = next(r for r in screen.rows if r.ssdtf_type == "HELLO" and r.verdicts)
            assert judged.verdicts[0].ok and judged.verdicts[0].role == "gateway"
            table = screen.query_one("#packets", DataTable)
            assert "✓ gateway" in str(table.get_row(str(judged.index))[6])

            # Back through the capture: the selection moves, nothing is re-sent. First let the
            # flow come to rest at a packet you can see (a held packet the noise filter hides
            # is forwarded at once, so rows may still arrive just after the last step).
            def at_rest() -> bool:
                last = screen.rows[-1]
                return last.status == "held" and last in screen.shown

            await wait_for(pilot, at_rest, what="a visible held packet")
            count, shown = len(screen.rows), len(screen.shown)
            await pilot.press("b", "b")
            await pilot.pause(0.1)
            assert table.cursor_row == shown - 3 and len(screen.rows) == count
            await pilot.press("e")
            await wait_for(pilot, lambda: screen.done, what="run to end")
            kinds = {r.ssdtf_type for r in screen.rows}
            assert {"HELLO", "CHAL", "RESP", "OK", "DATA", "ACK", "FWD", "DELIVER"} <= kinds
            assert all(r.status == "forwarded" for r in screen.rows)
            # The keys panel at the first packet differs from the one after the handshake.
            table.move_cursor(row=0)
            await pilot.pause(0.1)
            at_start = screen.keys_shown()
            data = next(i for i, r in enumerate(screen.shown) if r.ssdtf_type == "DATA")
            table.move_cursor(row=data)
            await pilot.pause(0.1)
            assert screen.keys_shown() != at_start and "sid[sensor-1]" in screen.keys_shown()
            assert "simulated" in screen.keys_shown()  # the kfrag hand-over says so
            assert "seq" in text_of(screen.query_one("#details"))
            # Export next to a typed path.
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, TracePathModal))
            app.screen.query_one(Input).value = str(tmp_path / "out" / "flow")
            await pilot.press("enter")
            json_path, pcap_path = tmp_path / "out" / "flow.json", tmp_path / "out" / "flow.pcap"
            await wait_for(pilot, lambda: pcap_path.exists() and "wrote" in text_of(screen.status))
            document = json.loads(json_path.read_text())
            assert document["format"] == "safelab-ssdtf-trace/1"
            assert len(document["packets"]) == len(screen.rows)
            assert pcap_path.stat().st_size > 100

    run(body())


def test_replay_attack_shows_where_and_why(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="ssdtf")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SsdtfScreen))
            screen = _screen(app)
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, AttackMenu))
            await pilot.press("enter")  # the first entry is replay
            await wait_for(pilot, lambda: screen.source == "attack replay", what="attack started")
            await wait_for(pilot, lambda: not screen.attack_running, timeout=30, what="attack")
            info = text_of(screen.query_one("#info"))
            assert "attack replay: REJECTED" in info and "duplicate seq=" in info
            assert screen.highlight is not None
            selected = screen.selected_row()
            assert selected is not None and selected.index == screen.highlight
            assert selected.rejected
            details = text_of(screen.query_one("#details"))
            assert "REJECTED by gateway" in details and "duplicate seq=" in details
            # ...and what that packet is for and what its failed check means.
            assert "What it is: DATA" in details and "if it fails:" in details
            # The verdict is read whole at 80 columns: the info line wraps instead of cutting.
            await pilot.pause(0.2)  # the wrapped line's height is settled at the next layout
            info_widget = screen.query_one("#info")
            assert info_widget.size.width <= 80
            if len(info) > 78:
                assert info_widget.size.height >= 2
            assert any(r.note for r in screen.rows)  # the attacker's injected copy

    run(body())


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_idle(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:  # noqa: F811
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SsdtfScreen))
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="ssdtf")
    assert snap_compare(app, terminal_size=size, run_before=ready)


def test_sensor_token_with_a_pin_is_asked_once(lab: Lab, softhsm) -> None:
    """A PIN-protected sensor key: the masked modal appears once, then the flow starts."""
    from screens.lab import TokenChoice

    lab.token = TokenChoice(softhsm.uri("dev"), "SoftHSM dev", "pkcs11")

    async def body() -> None:
        app = SafeLabApp(lab, start="ssdtf")
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SsdtfScreen))
            screen = app.screen
            await pilot.press("s")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "PinModal", what="PIN modal")
            await pilot.press(*softhsm.pin, "enter")
            await wait_for(pilot, lambda: bool(screen.rows), what="first held packet")
            await pilot.press("e")
            await wait_for(pilot, lambda: screen.done, timeout=30, what="run to end")

    run(body())


def test_flow_opens_the_token_once_closes_it_and_is_stored(lab: Lab, counting_tokens) -> None:
    """The stepper's run opens sensor-1's token once and closes it; Results can list the run."""
    from drivers.bench.store import ResultsStore
    from screens.lab import TokenChoice

    lab.token = TokenChoice("counting:p256", "counted software key", "software")

    async def body() -> None:
        app = SafeLabApp(lab, start="ssdtf")
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SsdtfScreen))
            screen = _screen(app)
            await pilot.press("s")
            await wait_for(pilot, lambda: bool(screen.rows), what="first held packet")
            await pilot.press("e")
            await wait_for(pilot, lambda: screen.done, timeout=30, what="run to end")
            assert "finished" in text_of(screen.query_one("#info"))

    run(body())
    assert counting_tokens.tokens == 1 and counting_tokens.closed == 1
    assert counting_tokens.balanced
    with ResultsStore(lab.db_path) as store:
        (record,) = store.list_runs()
    assert record.experiment == "ssdtf" and record.status == "complete"
