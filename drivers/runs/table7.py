"""Table 7 on the run service: every pattern before and after its remedies, judged ○/△/×.

Each cell is a short :class:`~drivers.runs.pattern.PatternRun` on the real peers with the
token given (default: the emulated paper SIM at real speed, ``login=verify``), in its own
scope (:meth:`RunContext.scoped`: a cell's peers stop when the cell ends), stored as a pattern
run of its own; the cell keeps its run id. A cell that cannot be measured (its run fails, or
``measure=False``) asks the what-if engine (:mod:`drivers.table7.predict`) and is labelled
``predicted``, or ``not measured`` with the reason. The verdict rules are
:mod:`drivers.table7.verdicts`'; the paper's own verdicts stand beside every cell.

Conditions, stated in every result: ``events`` per cell (default 10; ``quick``: 4; more for a
fast schedule, to cover 5 s / 2 s of it) and a cap
on the pattern's interval between events (default 5 s; ``quick``: 1 s; never below
``min(2 x budget, 10 s)``), so bulk transfer's 30 s period does not make the table take an
hour. The cap only shortens the idle time between events; each event's latency is measured
at the card's real speed, never scaled. The result
is stored as a run of its own (experiment ``table7``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from drivers.bench.runner import collect_versions
from drivers.errors import SafeLabError
from drivers.patterns.profile import PatternProfile, load_pattern, pattern_names
from drivers.runs.meta import TokenProvenance
from drivers.runs.service import RunContext, RunKind
from drivers.table7 import predict, remedies, verdicts
from drivers.table7.cells import MEASURED, NOT_MEASURED, PREDICTED, Cell, Table7Result

TABLE7_TOKEN = "iotsafe:emulated;profile=paper-sim;login=verify"
"""The emulated paper SIM at real speed (the PIN is the emulator's lab PIN)."""
SIDES = ("before", "after")


@dataclass(frozen=True)
class Table7Detail:
    """``RunSnapshot.detail`` of a Table 7 run: the cells so far and the one running."""

    cells: tuple[Cell, ...]
    running: str


@dataclass(frozen=True)
class Table7Run(RunKind):
    """``safelab table7``: the six patterns x before/after, measured where possible."""

    name: ClassVar[str] = "table7"
    token_uri: str = TABLE7_TOKEN
    link: str | None = None
    quick: bool = False
    events: int | None = None
    patterns: tuple[str, ...] = ()
    measure: bool = True
    max_interval_s: float | None = None

    def __post_init__(self) -> None:
        known = pattern_names()
        for name in self.patterns:
            if name not in known:
                raise SafeLabError(f"unknown pattern {name!r}", f"use one of {', '.join(known)}")
        if self.events is not None and self.events < 1:
            raise SafeLabError("events per cell must be at least 1", "fix --events")
        if self.link:
            from drivers.links import parse_link

            parse_link(self.link)

    @property
    def chosen(self) -> tuple[str, ...]:
        known = pattern_names()
        return self.patterns or tuple(n for n in verdicts.PAPER_VERDICTS if n in known)

    @property
    def n_events(self) -> int:
        return self.events or (4 if self.quick else 10)

    def events_for(self, profile: PatternProfile) -> int:
        """Events of one cell: ``n_events``, or (unless ``events`` was given) enough to cover
        2 s (quick) / 5 s of the pattern's schedule, so a 50 ms control loop is not judged on
        the backlog of its first connection alone."""
        if self.events is not None:
            return self.events
        interval = float(profile.params.get("period_s", profile.params.get("mean_interval_s", 1)))
        cover = 2.0 if self.quick else 5.0
        return max(self.n_events, math.ceil(cover / max(interval, 1e-3)))

    @property
    def interval_cap_s(self) -> float:
        return self.max_interval_s or (1.0 if self.quick else 5.0)

    def planned(self) -> int:
        return 2 * len(self.chosen)

    def conditions(self) -> dict[str, Any]:
        return {
            "events_per_cell": self.n_events,
            "events_cover_s": "at least 2 s (quick) / 5 s of the schedule",
            "interval_cap_s": self.interval_cap_s,
            "interval_floor": "min(2 x budget, 10 s)",
            "card_speed": "as the token spec says (default: real time)",
            "request_path": "event occurs -> delivered and acknowledged (pattern runs)",
            "measured": self.measure,
        }

    def interval_s(self, profile: PatternProfile, value: float) -> float:
        """The interval a cell runs with: ``value`` capped at the interval cap, but never
        below ``min(2 x budget, 10 s)``, so that the cap does not make slow events queue
        behind each other (a batch of five fresh JWTs takes ~3 s on the paper SIM)."""
        floor = min(2 * profile.budget_ms / 1000, 10.0)
        return min(value, max(self.interval_cap_s, floor))

    def _overrides(self, profile: PatternProfile) -> tuple[str, ...]:
        out = []
        for key in ("period_s", "mean_interval_s"):
            value = profile.params.get(key)
            if value is not None and self.interval_s(profile, float(value)) < float(value):
                out.append(f"{key}={self.interval_s(profile, float(value)):g}")
        return tuple(out)

    def execute(self, ctx: RunContext) -> Table7Result:
        result = self.compute(ctx)
        return self._stored(ctx, result)

    def compute(self, ctx: RunContext) -> Table7Result:
        """The cells, without storing the table (``safelab paper --table7`` embeds them)."""
        token = ctx.token(self.token_uri)
        ctx.describe(token=TokenProvenance.of(token, self.token_uri), condition="table7")
        if self.measure:
            ctx.pin(token)
        cells: list[Cell] = []
        status, reason = "complete", None
        for name in self.chosen:
            profile = load_pattern(name)
            for side in SIDES:
                if ctx.checkpoint():
                    status, reason = "incomplete", f"stopped after {len(cells)} cells"
                    break
                ctx.post(
                    done=len(cells),
                    planned=self.planned(),
                    detail=Table7Detail(tuple(cells), f"{name} {side}"),
                )
                cells.append(self._cell(ctx, profile, side))
            if status != "complete":
                break
        ctx.post(done=len(cells), planned=self.planned(), detail=Table7Detail(tuple(cells), ""))
        return Table7Result(
            tuple(cells),
            self.token_uri,
            self.link,
            self.quick,
            self.conditions(),
            status,
            reason,
        )

    def _cell(self, ctx: RunContext, profile: PatternProfile, side: str) -> Cell:
        settings = remedies.settings(profile.name, side)
        paper = verdicts.PAPER_VERDICTS[profile.name]
        base = Cell(
            pattern=profile.name,
            side=side,
            settings=settings,
            source=NOT_MEASURED,
            verdict=None,
            decided_by="",
            paper=paper.before if side == "before" else paper.after,
            agrees=None,
            budget_ms=profile.budget_ms,
        )
        why_not = "measuring was switched off (--no-measure)"
        if self.measure:
            try:
                return self._measured(ctx, profile, base)
            except SafeLabError as exc:
                why_not = f"the pattern run failed: {exc.one_line()}"
        prediction, why = predict.predict(profile.name, settings, self.token_uri, self.link)
        if prediction is None:
            return replace(base, reason=f"{why_not}; {why}")
        verdict, decided = verdicts.judge(
            prediction.p50_ms, prediction.p99_ms, prediction.deadline_miss_rate, profile.budget_ms
        )
        return replace(
            base,
            source=PREDICTED,
            verdict=verdict,
            decided_by=decided,
            agrees=verdict == base.paper,
            p50_ms=prediction.p50_ms,
            p99_ms=prediction.p99_ms,
            deadline_miss_rate=prediction.deadline_miss_rate,
            events=prediction.events,
            reason=f"{why_not}; predicted by {prediction.provenance}",
        )

    def _measured(self, ctx: RunContext, profile: PatternProfile, base: Cell) -> Cell:
        from drivers.runs.pattern import PatternRun

        spec = PatternRun(
            profile.name,
            self.token_uri,
            settings=base.settings + self._overrides(profile),
            events=self.events_for(profile),
            link=self.link,
        )
        with ctx.scoped() as scope:
            result = spec.execute(scope)
        summary = result.summary
        verdict, decided = verdicts.judge(
            summary.p50_ms, summary.p99_ms, summary.deadline_miss_rate, profile.budget_ms
        )
        return replace(
            base,
            source=MEASURED,
            verdict=verdict,
            decided_by=decided,
            agrees=verdict == base.paper,
            p50_ms=summary.p50_ms,
            p99_ms=summary.p99_ms,
            deadline_miss_rate=summary.deadline_miss_rate,
            events=summary.operations,
            signatures=summary.signatures,
            run_id=result.run_id,
            reason=result.reason or "",
        )

    def _stored(self, ctx: RunContext, result: Table7Result) -> Table7Result:
        token = ctx.token(self.token_uri)
        run_id = ctx.store.create_run(
            experiment="table7",
            mode="table7:quick" if self.quick else "table7",
            n_planned=self.planned(),
            warmup=0,
            data_len=0,
            hash_on=None,
            threshold_ms=0.0,
            token=token.info.as_dict(),
            versions=collect_versions(),
            extra={"table7": result.as_dict(), "stored_at": time.time()},
        )
        ctx.store.finish_run(run_id, result.status, result.reason)
        ctx.stored(run_id)
        return replace(result, record_id=run_id)

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        cells = result.cells
        judged = [c for c in cells if c.verdict]
        agree = sum(1 for c in judged if c.agrees)
        return (
            f"table7 {result.status}: {len(judged)} of {len(cells)} cells judged "
            f"({sum(c.source == MEASURED for c in cells)} measured, "
            f"{sum(c.source == PREDICTED for c in cells)} predicted), {agree} agree with the "
            f"paper; stored as run {result.record_id}"
        )
