"""Signing runs (the paper's Table 3) on the run service, driven by :class:`ExperimentRunner`.

The runner keeps doing the measuring (pre-flight, warm-up, trials, batched store writes,
``incomplete`` on stop or error); this kind only opens the token through the context, hands
the runner the service's PIN step and controls, and turns its progress into snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from drivers.bench.runner import (
    MODE_DEFAULT_TOKEN,
    ExperimentRunner,
    Progress,
    RunConfig,
    RunResult,
    Trial,
)
from drivers.runs.meta import TokenProvenance
from drivers.runs.service import RunContext, RunKind
from drivers.tokens.base import Pin
from drivers.tokens.registry import DEFAULT_TOKEN


@dataclass(frozen=True)
class SignDetail:
    """``RunSnapshot.detail`` of a signing run: the last trial and the card's last APDUs."""

    last: Trial | None
    apdus: tuple[object, ...] | None
    """``None`` when the token keeps no APDU trace (not a card)."""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SigningRun(RunKind):
    """``safelab sign`` / the signing lab: one signing experiment on one token."""

    name: ClassVar[str] = "sign"
    config: RunConfig
    token_uri: str | None = None
    """``None``: the mode's default token (``software:p256`` for ``local_sw``...)."""
    progress_interval_s: float = 0.2

    @property
    def uri(self) -> str:
        return self.token_uri or MODE_DEFAULT_TOKEN.get(self.config.mode, DEFAULT_TOKEN)

    def planned(self) -> int:
        return self.config.n

    def execute(self, ctx: RunContext) -> RunResult:
        self.config.validate()
        token = ctx.token(self.uri)
        ctx.describe(token=TokenProvenance.of(token, self.uri), condition=self.config.mode.value)

        def pin() -> Pin | None:
            return ctx.pin(token)

        def on_progress(progress: Progress) -> None:
            ctx.stored(progress.run_id)
            post(progress.last, progress.paused, progress)

        def post(last: Trial | None, paused: bool, progress: Progress | None = None) -> None:
            from drivers.runs.service import RunState

            ctx.post(
                run_id=runner.run_id,
                done=runner.stats.count,
                planned=self.config.n,
                stats=progress.stats if progress else runner.stats.snapshot(),
                histogram=runner.stats.histogram(),
                state=RunState.PAUSED if paused else RunState.RUNNING,
                detail=SignDetail(
                    last,
                    tuple(token.last_trace(6)) if token.keeps_trace else None,
                    tuple(runner.notes),
                ),
            )

        runner = ExperimentRunner(
            token,
            self.config,
            ctx.store,
            pin_provider=pin,
            on_progress=on_progress,
            progress_interval_s=self.progress_interval_s,
        )
        ctx.follow(runner)
        try:
            result = runner.run()
        finally:
            ctx.stored(runner.run_id)
            if runner.run_id:
                post(None, False)
        return result

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        text = f"run {result.run_id} {result.status}"
        return text + (f" ({result.reason})" if result.reason else "")
