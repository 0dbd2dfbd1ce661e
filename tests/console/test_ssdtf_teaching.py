"""The SSDTF stepper teaches: packets explained per service model, the lesson, the noise
filter, the keys pane's changes and legends, and ``t ms`` without the time a packet was held.

The lesson and filter tests run a real model-1 flow on the embedded broker (software key);
the explanation and held-clock tests check the driver-side data and the trace's clock on
their own (the clock through a fake ``perf_counter``, so nothing depends on the machine's
speed). The snapshots draw a fixed capture (no nonces, no timings) through the screen's own
drawing path.
"""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from console.app import SafeLabApp
from drivers.runs.packets import PacketRow, VerdictView
from drivers.ssdtf import explain as ex
from drivers.ssdtf.trace import KeyEvent, KeyView, Trace
from screens.lab import Lab
from screens.ssdtf import AttackMenu, SsdtfScreen, lesson_plan, visible_rows
from screens.widgets.packets import hexdump, keys_text, legend_text
from tests.console.conftest import run, text_of, wait_for
from tests.console.test_snapshots import SIZES, fixed_lab  # noqa: F401 - fixture


def _screen(app: SafeLabApp) -> SsdtfScreen:
    screen = app.screen
    assert isinstance(screen, SsdtfScreen)
    return screen


# -- the explanations (data, driver side) ---------------------------------------------------


def test_every_ssdtf_message_type_is_explained_with_goal_receiver_key_and_failure() -> None:
    from drivers.ssdtf.wire import MsgType

    for msg_type in MsgType:
        explanation = ex.explain("PUBLISH", msg_type.name, 1)
        assert explanation.known, msg_type.name
        assert explanation.goals and set(explanation.goals) <= set(ex.GOALS)
        assert explanation.receiver and explanation.key and explanation.failure
    # Every goal is served by some message.
    served = {g for t in MsgType for g in ex.explain("PUBLISH", t.name).goals}
    assert served == set(ex.GOALS)


def test_explanations_follow_the_service_model() -> None:
    data_1 = ex.explain("PUBLISH", "DATA", 1).purpose
    data_2 = ex.explain("PUBLISH", "DATA", 2).purpose
    assert "pk_MS.pre" in data_1 and "management server" in data_1
    assert "pk_U[user-1].pre" in data_2 and "user-1" in data_2
    assert "user-1" in ex.explain("PUBLISH", "RESP", 2).key
    assert "the ms" in ex.explain("PUBLISH", "RESP", 3).key
    assert "user-1 registers the sensors" in ex.model_line(2)
    assert "pk_MS.pre" in ex.model_line(3) and "user-1 (conversion keys" in ex.model_line(3)


def test_unknown_message_types_get_a_fallback_and_mqtt_packets_their_role() -> None:
    fallback = ex.explain("PUBLISH", "REGISTER", 1)
    assert not fallback.known and "REGISTER" in fallback.title
    assert "verdicts below" in fallback.checks
    connect = ex.explain("CONNECT")
    assert connect.goals == (ex.AUTHENTICITY,) and connect.receiver == "the broker"
    assert ex.explain("PUBACK").goals == ()
    assert ex.is_noise("PUBACK") and ex.is_noise("SUBACK") and not ex.is_noise("CONNECT")
    assert not ex.is_noise("PUBLISH", "DATA") and not ex.is_noise("DISCONNECT")


def test_trace_clock_stops_while_a_packet_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """``t ms`` of the packets after a held one does not count the hold."""
    from drivers.ssdtf import trace as trace_module

    pingreq = bytes([0xC0, 0x00])  # an MQTT PINGREQ frame
    clock = [100.0]
    monkeypatch.setattr(trace_module.time, "perf_counter", lambda: clock[0])
    trace = Trace()
    clock[0] = 100.5
    held = trace.add_packet(1, "sensor-1", "c2b", pingreq, "held")
    assert held.t_ms == pytest.approx(500.0)
    clock[0] = 160.5  # a person looked at it for a minute
    assert trace.now_ms() == pytest.approx(500.0)
    trace.set_status(held, "forwarded")
    clock[0] = 160.75
    after = trace.add_packet(1, "sensor-1", "c2b", pingreq, "forwarded")
    assert after.t_ms == pytest.approx(750.0)


def test_hex_dump_and_keys_pane_layouts() -> None:
    raw = bytes(range(40))
    for width in (16, 8, 4):
        lines = hexdump(raw, width).splitlines()
        assert len(lines) == -(-40 // width)
        assert max(len(line) for line in lines) <= 5 + width * 4
    before = {"sensor-1": [KeyView("sk_D", "signing private")]}
    after = {"sensor-1": [KeyView("sk_D", "signing private"), KeyView("sid", "session")]}
    text = keys_text(after, before, 34, ("gateway", "sensor-1")).plain
    assert text.index("+ sid") < text.index("keys held after #34")  # the change on top
    legend = legend_text(("gateway", "sensor-1")).plain
    assert "lanes gs = gateway sensor-1" in legend
    assert "\nB the MQTT broker" in legend and "\nds distribution server" in legend


# -- a fixed capture for the snapshots and the plan -----------------------------------------


def _row(index: int, lane: str, direction: str, kind: str, mqtt: str = "PUBLISH", **extra):
    verdicts = extra.pop("verdicts", ())
    fields = extra.pop("fields", ())
    raw = bytes((index * 7 + i) % 256 for i in range(extra.pop("size", 24)))
    return PacketRow(
        index=index,
        t_ms=10.0 + index * 1.5,
        lane=lane,
        direction=direction,
        arrow=f"{lane}→broker" if direction == "c2b" else f"broker→{lane}",
        mqtt_type=mqtt,
        topic=extra.pop("topic", f"ssdtf/v1/x/{lane}" if mqtt == "PUBLISH" else ""),
        qos=1,
        dup=False,
        retain=False,
        packet_id=index if mqtt in ("PUBLISH", "PUBACK") else None,
        size=len(raw),
        ssdtf=tuple(fields),
        ssdtf_type=kind,
        ssdtf_error="",
        status="forwarded",
        note="",
        verdicts=tuple(VerdictView(*v) for v in verdicts),
        hexdump="",
        raw=raw,
    )


JUDGED = {
    4: ("gateway", "challenge sent", "handshake"),
    5: ("sensor-1", "broker signature valid, Nd echoed", "handshake"),
    6: ("gateway", "device signature valid: session READY", "handshake"),
    7: ("sensor-1", "handshake complete", "handshake"),
    9: ("gateway", "device signature valid; seq=1 accepted and forwarded", "data"),
    10: ("ds", "broker signature valid; delivered to user-1", "forward"),
    11: ("sensor-1", "signed ACK seq=1 (OK); message discarded", "ack"),
    12: ("user-1", "DS signature valid; cfrags verified; decrypted; sender binding", "deliver"),
    14: ("ms", "registration of sensor-1 accepted", "registration"),
}
"""The verdicts of the fixed capture: ``index: (role, reason, stage)``, all accepted."""


def fixed_capture() -> tuple[tuple[PacketRow, ...], tuple[str, ...]]:
    data = (("seq", "1"), ("ct", "52 B, starts 00"))
    specs = [
        (0, "sensor-1", "c2b", "", "CONNECT", {}),
        (1, "sensor-1", "b2c", "", "CONNACK", {}),
        (2, "sensor-1", "c2b", "HELLO", "PUBLISH", {"fields": (("cid", "sensor-1"),)}),
        (3, "sensor-1", "b2c", "", "PUBACK", {}),
        (4, "gateway", "b2c", "HELLO", "PUBLISH", {}),
        (5, "sensor-1", "b2c", "CHAL", "PUBLISH", {}),
        (6, "gateway", "b2c", "RESP", "PUBLISH", {}),
        (7, "sensor-1", "b2c", "OK", "PUBLISH", {}),
        (8, "sensor-1", "c2b", "DATA", "PUBLISH", {"size": 120, "fields": data}),
        (9, "gateway", "b2c", "DATA", "PUBLISH", {"size": 120, "fields": data}),
        (10, "ds", "b2c", "FWD", "PUBLISH", {}),
        (11, "sensor-1", "b2c", "ACK", "PUBLISH", {}),
        (12, "user-1", "b2c", "DELIVER", "PUBLISH", {"fields": (("ext_id", "fd18a3e2"),)}),
        (13, "user-1", "c2b", "", "PUBACK", {}),
        (14, "ms", "b2c", "REG", "PUBLISH", {"fields": (("kind", "device"),)}),
    ]
    rows = []
    for index, lane, direction, kind, mqtt, extra in specs:
        judged = JUDGED.get(index)
        verdicts = [(judged[0], True, judged[1], judged[2])] if judged else []
        rows.append(_row(index, lane, direction, kind, mqtt, verdicts=verdicts, **extra))
    return tuple(rows), ("gateway", "ds", "ms", "user-1", "sensor-1")


def fixed_trace() -> Trace:
    trace = Trace("fixed")
    keys = [
        ("sensor-1", "sk_D[sensor-1]", "signing private", 0),
        ("sensor-1", "pk_B", "public", 0),
        ("gateway", "sk_B", "signing private", 0),
        ("gateway", "pk_D[sensor-1]", "public", 0),
        ("ds", "kfrag#2[user-1]", "conversion key", 0),
        ("user-1", "sk_U[user-1].pre", "pre private", 0),
        ("sensor-1", "sid[sensor-1]", "session", 8),
    ]
    for role, name, kind, at in keys:
        trace.key_events.append(KeyEvent(role, "add", KeyView(name, kind), at, 0.0))
    return trace


def test_filter_and_lesson_plan_on_the_fixed_capture() -> None:
    rows, _ = fixed_capture()
    shown = visible_rows(rows, True)
    assert [r.index for r in shown] == [0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14]
    assert visible_rows(rows, False) == rows
    plan = lesson_plan(rows)
    assert [step.name for step, _ in plan] == [s.name for s in ex.LESSON]
    # Each step shows the copy its receiver judged (HELLO at the gateway, not the uplink).
    assert [row.index for _, row in plan] == [14, 4, 5, 6, 7, 9, 10, 12, 11, 12]


async def _show_fixed(pilot, lesson_steps: int = -1, select: int | None = None) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SsdtfScreen))
    screen = pilot.app.screen
    rows, lanes = fixed_capture()
    screen.source, screen.done, screen.model = "model 1", True, 1
    screen.trace, screen.has_trace = fixed_trace(), True
    screen._draw(rows, lanes)
    screen._live_info(True)
    if lesson_steps >= 0:
        screen.action_lesson()
        for _ in range(lesson_steps):
            await pilot.press("n")
    elif select is not None:
        screen._select(select)
    await pilot.pause(0.2)
    await pilot.wait_for_scheduled_animations()  # a scroll to the selection has ended


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_explained_packet(snap_compare, fixed_lab: Lab, size) -> None:  # noqa: F811
    async def ready(pilot) -> None:
        await _show_fixed(pilot, select=9)

    app = SafeLabApp(fixed_lab, start="ssdtf")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_lesson(snap_compare, fixed_lab: Lab, size) -> None:  # noqa: F811
    async def ready(pilot) -> None:
        await _show_fixed(pilot, lesson_steps=2)  # step 3: response

    app = SafeLabApp(fixed_lab, start="ssdtf")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_all_packets(snap_compare, fixed_lab: Lab, size) -> None:  # noqa: F811
    async def ready(pilot) -> None:
        await _show_fixed(pilot, select=1)
        await pilot.press("f")  # the noise filter off: CONNACK and PUBACKs appear
        await pilot.pause(0.2)
        # The rebuilt table scrolls to the selection after a refresh, and the table is one
        # row taller than its view at 120x36: the thumb then sat at either end from run to
        # run (same rows). Pin the scroll to the end, where the selection is, before the shot.
        await pilot.wait_for_scheduled_animations()
        table = pilot.app.screen.query_one("#packets", DataTable)
        table.scroll_end(animate=False, immediate=True)
        await pilot.pause(0.1)

    app = SafeLabApp(fixed_lab, start="ssdtf")
    assert snap_compare(app, terminal_size=size, run_before=ready)


# -- a real flow ----------------------------------------------------------------------------


def test_lesson_walks_a_real_flow_then_offers_an_attack(lab: Lab) -> None:
    """``l`` on an idle stepper runs a model-1 flow to its end, then walks it step by step."""

    async def body() -> None:
        app = SafeLabApp(lab, start="ssdtf")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SsdtfScreen))
            screen = _screen(app)
            await pilot.press("l")
            await wait_for(pilot, lambda: screen.lesson_step == 0, timeout=60, what="lesson")
            assert screen.done and screen.has_class("-lesson")
            seen = []
            for number, (step, row) in enumerate(screen.lesson_steps, start=1):
                assert screen.lesson_step == number - 1
                selected = screen.selected_row()
                assert selected is not None and selected.index == row.index
                details = text_of(screen.query_one("#details"), width=200)
                assert f"Lesson {number}/{len(screen.lesson_steps)}: {step.name}" in details
                if step.ssdtf_type:
                    assert selected.ssdtf_type == step.ssdtf_type
                    explanation = ex.explain(selected.mqtt_type, selected.ssdtf_type, 1)
                    assert explanation.title in details and "checked by:" in details
                    # The receiver named by the explanation is the role that judged it.
                    judged = {v.role for v in selected.verdicts}
                    assert judged and all(v.ok for v in selected.verdicts)
                    receiver = explanation.receiver.removeprefix("the ")
                    role = {"sensor": "sensor-", "data user": "user-"}.get(receiver, receiver)
                    assert all(r.startswith(role) for r in judged), (receiver, judged)
                else:
                    ext_id = dict(selected.ssdtf)["ext_id"]
                    assert f"ext_id {ext_id}" in details
                seen.append(step.name)
                await pilot.press("n")
                await pilot.pause(0.05)
            assert seen == [s.name for s in ex.LESSON]
            await wait_for(pilot, lambda: isinstance(app.screen, AttackMenu), what="menu")
            assert ex.TRY_ATTACK in text_of(app.screen.query_one("#intro"), width=200)
            assert screen.lesson_step == -1 and not screen.has_class("-lesson")
            await pilot.press("escape")
            # The noise filter (on by default) hid MQTT control packets of the real flow.
            hidden = len(screen.rows) - len(screen.shown)
            assert hidden > len(screen.rows) // 3
            assert not any(ex.is_noise(r.mqtt_type, r.ssdtf_type) for r in screen.shown)
            assert f"{hidden} MQTT control packets hidden" in text_of(screen.query_one("#info"))
            await pilot.press("f")
            assert screen.shown == screen.rows and not screen.hide_noise
            assert "all packets" in text_of(screen.query_one("#info"))
            assert len(screen.query_one("#packets").rows) == len(screen.rows)

    run(body())


def test_escape_leaves_the_lesson_and_the_keys_pane_shows_changes(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="ssdtf")
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SsdtfScreen))
            screen = _screen(app)
            await pilot.press("l")
            await wait_for(pilot, lambda: screen.lesson_step == 0, timeout=60, what="lesson")
            while screen.lesson_steps[screen.lesson_step][0].name != "session":
                await pilot.press("n")
            # At the OK the sensor gains its session id: the first thing in the keys pane.
            keys = screen.keys_shown()
            assert keys.splitlines()[0].startswith("changed at #")
            assert "+ sid[sensor-1]" in keys.split("keys held after")[0]
            await pilot.press("escape")
            assert screen.lesson_step == -1
            assert "Lesson" not in text_of(screen.query_one("#details"), width=200)

    run(body())


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
def test_table_and_hex_fit_the_terminal(fixed_lab: Lab, size: tuple[int, int]) -> None:  # noqa: F811
    """No sideways scrolling in the packet table, no hex line wider than its pane, and a long
    verdict wraps in the info line instead of being cut."""
    from rich.text import Text

    from screens.widgets.stepper import PacketDetails

    async def body() -> None:
        app = SafeLabApp(fixed_lab, start="ssdtf")
        async with app.run_test(size=size) as pilot:
            await _show_fixed(pilot, select=9)
            screen = _screen(app)
            table = screen.query_one("#packets")
            assert table.max_scroll_x == 0, (table.virtual_size, table.size)
            details = screen.query_one(PacketDetails)
            width = details.content_size.width
            dump = text_of(details, width=400).split("\nhex\n", 1)[1]
            lines = [line for line in dump.splitlines() if line.strip()]
            assert lines and max(len(line.rstrip()) for line in lines) <= width
            long = "attack replay: REJECTED at #9 by gateway: " + "duplicate seq=1 " * 8
            screen.info.text = Text(long)
            await pilot.pause(0.1)
            assert screen.info.size.height >= 2 and screen.info.size.width <= size[0]

    run(body())
