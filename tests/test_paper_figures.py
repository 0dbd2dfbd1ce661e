"""The paper's figures are kept as printed, and a mode is only compared with a row measured
the same way."""

from __future__ import annotations

from rich.console import Console

from drivers.bench.paper import NO_PAPER_ROW, TABLE3, TABLE6, paper_row_for
from drivers.bench.stats import StreamingStats
from screens.widgets.tables import table3


def test_table6_keeps_the_printed_difference_and_flags_coap() -> None:
    coap = TABLE6["coap"]
    assert coap.difference_ms == 653  # as printed
    assert coap.computed_difference_ms == 649  # 676 - 27
    assert "+653" in coap.inconsistency and "+649" in coap.inconsistency
    consistent = [p for p, row in TABLE6.items() if not row.inconsistency]
    assert sorted(consistent) == ["https", "mqtt", "vpn"]
    assert [TABLE6[p].difference_ms for p in ("vpn", "mqtt", "https")] == [799, 698, 661]


def test_only_openssl_cli_is_compared_with_the_papers_local_sw() -> None:
    assert paper_row_for("openssl_cli") is TABLE3["local_sw"]
    assert paper_row_for("local_sw") is None
    assert paper_row_for("sign_only") is TABLE3["sign_only"]


def test_local_sw_with_the_paper_row_asked_says_why_there_is_none() -> None:
    stats = StreamingStats()
    stats.add(50_000, {"sign_init": 1_000, "sign": 49_000})
    table = table3(stats.snapshot(), "software:p256", "local_sw", 1000.0, with_paper=True)
    console = Console(width=200, record=True)
    console.print(table)
    text = " ".join(console.export_text().split())
    assert "paper local_sw" not in text
    assert "no paper row: " + " ".join(NO_PAPER_ROW["local_sw"].split()) in text


def test_the_paper_verdict_names_each_failed_figure_and_a_link() -> None:
    from drivers.paper.figures import DIFFERENCE, Figure, Tolerance
    from drivers.paper.result import PaperResult
    from screens.widgets.tables import paper_verdict_line

    figures = (
        Figure("Table 6", "coap paper", "difference", 738.8, 653.0, DIFFERENCE),
        Figure("Table 6", "mqtt paper", "difference", 664.7, 698.0, DIFFERENCE),
        Figure("Table 6", "https paper", "difference", 90.0, 661.0, Tolerance(why="link")),
    )
    link = {"spec": "lte-m", "mode": "proxy", "peers": {}}
    document = PaperResult(figures, {}, (), {"link": link}).as_dict()
    lines = paper_verdict_line(document).plain.splitlines()
    assert lines[0] == "NOT REPRODUCED: 1 pass, 1 fail, 1 not judged"
    assert lines[1] == "FAIL Table 6 coap paper difference: 738.8 vs 653 (1.13)"
    assert lines[2].startswith("link lte-m: Table 6 and JWT shown, not judged")
    assert len(lines) == 3 and all(len(line) <= 78 for line in lines)  # one screen at 80×24
