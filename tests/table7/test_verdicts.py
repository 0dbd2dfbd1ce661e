"""The Table 7 verdict rules at and around their thresholds."""

from __future__ import annotations

import math

from drivers.table7.verdicts import DESIGN, GOOD, HARD, PAPER_VERDICTS, judge


def test_good_needs_p99_within_budget_and_at_most_one_percent_misses() -> None:
    assert judge(100, 1000, 0.01, 1000)[0] == GOOD
    assert judge(100, 1000.1, 0.0, 1000)[0] == DESIGN
    assert judge(100, 900, 0.02, 1000)[0] == DESIGN


def test_design_needs_p50_within_budget_and_at_most_a_quarter_missed() -> None:
    verdict, why = judge(999, 5000, 0.25, 1000)
    assert verdict == DESIGN and "P99 5000 ms > budget 1000 ms" in why
    assert judge(999, 5000, 0.26, 1000)[0] == HARD
    verdict, why = judge(1001, 1200, 0.0, 1000)
    assert verdict == HARD and "P50 1001 ms > budget 1000 ms" in why


def test_no_completed_event_is_hard() -> None:
    assert judge(math.nan, math.nan, 1.0, 1000)[0] == HARD


def test_the_paper_verdicts_are_table_7() -> None:
    assert [(p, v.before, v.after) for p, v in PAPER_VERDICTS.items()] == [
        ("periodic", "△", "○"),
        ("event-driven", "△", "○"),
        ("real-time-control", "×", "△"),
        ("remote-management", "△", "○"),
        ("bulk-transfer", "△", "○"),
        ("batch", "○", "○"),
    ]
