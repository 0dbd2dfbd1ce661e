"""The Protocols screen end to end: real peers on loopback, real tokens, real store.

MQTT runs against the real Mosquitto (installed by ``scripts/test``), full and resumed, from
the matrix; a stop keeps the partial HTTPS run; Table 6 runs for a fast subset (mqtt,https,
n=2) with the emulated card at ×0.02; a PKCS#11 token asks for its PIN once. Snapshots use
fixed peers and fixed figures drawn through the same methods the workers' messages call.
"""

from __future__ import annotations

import numpy as np
import pytest

from console.app import SafeLabApp
from drivers.bench.stats import Histogram, StreamingStats
from drivers.bench.store import ResultsStore
from drivers.errors import SafeLabError
from drivers.peers.select import PeerStatus
from drivers.protocols.base import Condition
from drivers.protocols.experiment import PROTOCOLS, Table6Row
from drivers.protocols.rules import refusal
from screens.lab import Lab, TokenChoice
from screens.pin import PinModal
from screens.protocols import PROTOCOL_ROWS, ProtocolsScreen, parse_form, table6_steps
from screens.widgets.protocol_tables import CellResult
from tests.console.conftest import builtin_only, run, text_of, wait_for
from tests.console.test_snapshots import SIZES, fixed_lab  # noqa: F401 - fixture

CARD = "iotsafe:emulated;profile=discrete-se;speed=0.02"

FIXED_PEERS = (
    PeerStatus("MQTT/TLS", "MosquittoPeer", False, True, "apt-get install mosquitto"),
    PeerStatus("HTTPS", "EmbeddedHttpsPeer", True, True, "apt-get install nginx"),
    PeerStatus("CoAP/DTLS", "CoapServerPeer", False, True, "apt-get install libcoap3-bin"),
    PeerStatus("TLS-VPN", "", False, False, "apt-get install openvpn"),
)
"""One real peer, one embedded, one missing: every way a row can look."""


def _screen(app: SafeLabApp) -> ProtocolsScreen:
    screen = app.screen
    assert isinstance(screen, ProtocolsScreen)
    return screen


async def _open(pilot) -> ProtocolsScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ProtocolsScreen))
    screen = _screen(pilot.app)
    await wait_for(pilot, lambda: screen.peers is not None, what="peer check")
    return screen


def _set(screen: ProtocolsScreen, **fields: str) -> None:
    for name, value in fields.items():
        screen.query_one(f"#{name}").value = value


def _cell(screen: ProtocolsScreen, protocol: str, column: str) -> str:
    table = screen.query_one("#matrix")
    return str(table.get_cell(protocol, column))


def test_rows_are_the_drivers_protocols() -> None:
    assert PROTOCOL_ROWS == PROTOCOLS


def test_form_errors_name_the_field() -> None:
    assert parse_form("2", "0", "60", "mqtt, https").table6_protocols == ("mqtt", "https")
    for args, words in (
        (("x", "1", "60", "mqtt"), "whole numbers"),
        (("0", "1", "60", "mqtt"), "at least 1"),
        (("3", "1", "0", "mqtt"), "TTL"),
        (("3", "1", "60", "jwt"), "no protocol 'jwt'"),
    ):
        with pytest.raises(SafeLabError, match=words):
            parse_form(*args)
    # interleaved steps: full for all four, resumed for mqtt and https, two JWT steps
    assert table6_steps(("vpn", "mqtt", "coap", "https")) == 8
    assert table6_steps(("vpn", "coap"), jwt=False) == 2


def test_mqtt_full_and_resumed_cells_update_and_are_stored(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab, start="protocols")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open(pilot)
            assert "mosquitto" in str(screen.query_one("#matrix").rows["mqtt"].label)
            _set(screen, n="5", warmup="1")
            await pilot.press("down")  # vpn → mqtt, column full
            assert screen.selected()[0] == "mqtt"
            before = screen.finished_run_id
            await pilot.press("enter")
            # Wait for the run to have ended, not to be seen running: a fast run can start and
            # end between two polls.
            await wait_for(
                pilot,
                lambda: screen.finished_run_id != before and not screen.running,
                timeout=60,
                what="full run",
            )
            full_id = screen.finished_run_id
            assert "complete" in str(screen.status.render())
            cell = _cell(screen, "mqtt", "full")
            assert "/" in cell and "1.00 sig" in cell and "*" not in cell
            info = text_of(screen.query_one("#cell-info"))
            assert f"run {full_id} complete 5/5" in info and "real peer mosquitto" in info
            assert "real token software secp256r1" in info
            assert "handshake" in text_of(screen.query_one("#phases"))
            assert screen.query_one("#histogram").bins is not None

            await pilot.press("right", "enter")  # the resumed column
            await wait_for(
                pilot,
                lambda: screen.finished_run_id != full_id and not screen.running,
                timeout=60,
                what="resumed run",
            )
            resumed_id = screen.finished_run_id
            assert resumed_id > full_id
            assert "0.00 sig" in _cell(screen, "mqtt", "resumed")
            assert "1.00 sig" in _cell(screen, "mqtt", "full")  # the other cell stays
            result = screen.results[(lab.token.uri, "mqtt", "resumed")]
            assert result.resumed == 5 and result.sig_per_conn == 0.0
            resumed_bins = screen.query_one("#histogram").bins
            await pilot.press("left")  # back to full: its own distribution, not the last run's
            assert screen.query_one("#histogram").bins is not resumed_bins
            assert f"run {full_id}" in screen.query_one("#progress").summary
        with ResultsStore(lab.db_path) as store:
            full, resumed = store.get_run(full_id), store.get_run(resumed_id)
        assert (full.mode, full.status, full.n_samples) == ("mqtt:full", "complete", 5)
        assert (resumed.mode, resumed.status, resumed.n_samples) == ("mqtt:resumed", "complete", 5)
        assert full.extra["peer"] == "MosquittoPeer" and not full.emulated

    run(body())


def test_stop_keeps_the_partial_run(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="protocols")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open(pilot)
            _set(screen, n="100000", warmup="0")
            screen.select("https", "keepalive")
            await pilot.press("f5")
            key = (lab.token.uri, "https", "keepalive")
            await wait_for(
                pilot,
                lambda: key in screen.results and screen.results[key].done >= 3,
                timeout=60,
                what="live cell",
            )
            assert screen.results[key].status == "running"
            await pilot.press("f7")
            await wait_for(pilot, lambda: not screen.running, timeout=30, what="stop")
            assert "incomplete" in str(screen.status.render())
            assert "*" in _cell(screen, "https", "keepalive")  # a partial run is marked
            run_id, done = screen.finished_run_id, screen.results[key].done
        with ResultsStore(lab.db_path) as store:
            record = store.get_run(run_id)
        assert record.status == "incomplete" and "stopped by the user" in record.reason
        assert 0 < record.n_samples == done < 100000

    run(body())


def test_cells_that_cannot_run_say_why(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="protocols")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open(pilot)
            screen.show_peers(FIXED_PEERS)
            assert "n/a" in _cell(screen, "vpn", "full")
            assert "missing" in str(screen.query_one("#matrix").rows["vpn"].label)
            screen.select("vpn", "full")
            assert "apt-get install openvpn" in text_of(screen.query_one("#cell-info"))
            await pilot.press("enter")
            await pilot.pause()
            assert not screen.running
            assert "apt-get install openvpn" in str(screen.status.render())
            screen.select("coap", "resumed")
            await pilot.press("enter")
            await pilot.pause()
            assert not screen.running and "does not apply" in str(screen.status.render())
            # jwt + resume: refused, in the very words the CLI uses (drivers.protocols.rules)
            screen.select("jwt", "resumed")
            await pilot.press("enter")
            await pilot.pause()
            reason = refusal("jwt", Condition(resume=True))
            assert reason is not None and not screen.running
            assert reason in str(screen.status.render()).replace("\n", " ")
            assert "·" in _cell(screen, "jwt", "resumed")
            # The marks are explained on screen, whole at 80 columns.
            legend = screen.query_one("#legend")
            assert "– not run yet" in text_of(legend) and "· does not apply" in text_of(legend)
            assert len(text_of(legend).strip()) <= legend.content_size.width
            _set(screen, t6protocols="vpn,mqtt")
            await pilot.press("t")
            await pilot.pause()
            assert not screen.running and "openvpn" in str(screen.status.render())

    run(body())


def test_table6_fast_subset_with_the_emulated_card(lab: Lab) -> None:
    lab.token = TokenChoice(CARD, "emulated discrete-se", "iotsafe", emulated=True)

    async def body() -> None:
        app = SafeLabApp(lab, start="protocols")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open(pilot)
            _set(screen, n="2", warmup="1", t6protocols="mqtt,https")
            await pilot.press("t")
            await wait_for(
                pilot,
                lambda: screen.table6_rows is not None and not screen.running,
                timeout=120,
                what="Table 6",
            )
            assert "Table 6 complete" in str(screen.status.render())
            rows = screen.table6_rows
            assert rows is not None and [row.protocol for row in rows] == ["mqtt", "https"]
            assert all(row.resumed_token_signatures == 0 for row in rows)
            assert all(row.token_sign_ms > 0 for row in rows)
            heading = text_of(screen.query_one("#table6-heading"))
            assert "[EMULATED]" in heading and "discrete-se" in heading
            table = text_of(screen.query_one("#table6"))
            assert "757" in table and "678" in table  # the paper's SIM figures beside ours
            notes = text_of(screen.query_one("#table6-notes"))
            assert "MosquittoPeer (real peer)" in notes and "NginxPeer (real peer)" in notes
            run_ids = [i for row in rows for i in row.run_ids]
        assert len(run_ids) == 8
        with ResultsStore(lab.db_path) as store:
            records = [store.get_run(i) for i in run_ids]
        assert all(r.status == "complete" and r.n_samples == 2 for r in records)
        assert sum(r.emulated for r in records) == 4  # the token's runs; the others: software

    run(body())


def test_table6_stop_ends_between_runs(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="protocols")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open(pilot)
            _set(screen, n="2", warmup="0", t6protocols="mqtt,https")
            await pilot.press("t", "f7")
            await wait_for(pilot, lambda: not screen.running, timeout=60, what="stop")
            status = str(screen.status.render())
            assert "Table 6 stopped by the user after" in status and "of 6 steps" in status
            assert screen.table6_rows is None  # no half table presented as Table 6

    run(body())


@pytest.mark.softhsm
def test_pkcs11_token_asks_for_its_pin_once(lab: Lab, softhsm) -> None:
    lab.token = TokenChoice(softhsm.uri(), softhsm.label, "pkcs11")

    async def body() -> None:
        app = SafeLabApp(lab, start="protocols")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open(pilot)
            _set(screen, n="3", warmup="1")
            screen.select("mqtt", "full")
            await pilot.press("f5")
            await wait_for(pilot, lambda: isinstance(app.screen, PinModal), what="PIN modal")
            await pilot.press(*softhsm.pin, "enter")
            await wait_for(pilot, lambda: not screen.running, timeout=60, what="run")
            assert "complete" in str(screen.status.render())
            assert "1.00 sig" in _cell(screen, "mqtt", "full")
            assert not isinstance(app.screen, PinModal)  # asked once, not per handshake

    run(body())


# -- snapshots -------------------------------------------------------------------------------


def _fixed_result(
    protocol: str, column: str, median_ms: float, sig: float
) -> tuple[CellResult, Histogram | None]:
    """A finished cell from fixed samples, through the statistics a live run uses."""
    rng = np.random.default_rng(len(protocol) * 7 + len(column))
    stats = StreamingStats(1000.0, phases=None)
    for total in rng.lognormal(np.log(median_ms * 1e6), 0.1, 30).astype(int):
        sign = int(total * 0.6 * sig)
        stats.add(
            int(total),
            {"connect": 200_000, "handshake": int(total * 0.8), "sign": sign, "ready": 0},
        )
    return CellResult(
        protocol=protocol,
        column=column,
        condition=column,
        token_uri=CARD,
        token_label="IoT SAFE emulated card 'default' (discrete-se, speed 0.02)",
        emulated=True,
        peer="MosquittoPeer" if protocol == "mqtt" else "EmbeddedHttpsPeer",
        embedded=protocol != "mqtt",
        stats=stats.snapshot(),
        planned=30,
        sig_per_conn=sig,
        resumed=0 if sig else 30,
        run_id=7,
        status="complete",
    ), stats.histogram()


FIXED_TABLE6 = (
    Table6Row("mqtt", 49.3, 561.2, 508.4, 5.1, 5.3, 0, [1, 2, 3, 4]),
    Table6Row("https", 12.7, 523.9, 507.9, 4.2, 4.4, 0, [5, 6, 7, 8]),
    Table6Row("coap", 21.4, 533.0, 509.2, note="no resumption: libcoap 4.3.1 has no DTLS"),
)


def _fixed_screen(pilot) -> ProtocolsScreen:
    screen = _screen(pilot.app)
    screen.show_peers(FIXED_PEERS)
    screen.set_focus(None)
    return screen


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_idle(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:  # noqa: F811
    async def ready(pilot) -> None:
        await _open(pilot)
        _fixed_screen(pilot)
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="protocols")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_results(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:  # noqa: F811
    fixed_lab.token = TokenChoice(CARD, "IoT SAFE emulated card", "iotsafe", emulated=True)

    async def ready(pilot) -> None:
        await _open(pilot)
        screen = _fixed_screen(pilot)
        for protocol, column, median, sig in (
            ("https", "full", 523.0, 1.0),
            ("https", "resumed", 4.4, 0.0),
            ("mqtt", "full", 561.0, 1.0),
        ):
            screen.show_result(*_fixed_result(protocol, column, median, sig))
        screen.select("mqtt", "full")
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="protocols")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_table6(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:  # noqa: F811
    async def ready(pilot) -> None:
        await _open(pilot)
        screen = _fixed_screen(pilot)
        peers = {"mqtt": ("MosquittoPeer", False), "https": ("EmbeddedHttpsPeer", True)}
        peers["coap"] = ("CoapServerPeer", False)
        screen.show_table6(FIXED_TABLE6, peers, "IoT SAFE emulated card", True, 30)
        screen.show_view("table6-view")
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="protocols")
    assert snap_compare(app, terminal_size=size, run_before=ready)
