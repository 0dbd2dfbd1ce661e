"""Card triage on the run service: the console's Triage job opens, logs in and checks through
here, so its token is opened once, its PIN asked once (a SIM with ``login=verify``), and the
token closed at the end, like every other run.

Triage stores nothing in the results store (it is a diagnosis, not a measurement); its report
is the outcome's result. Each finished check is posted as a snapshot (``detail`` is a
:class:`TriageDetail` holding every check so far), so the screen draws them as they come.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from drivers.errors import SafeLabError
from drivers.runs.meta import TokenProvenance
from drivers.runs.service import RunContext, RunKind

TriageChecks = Callable[..., Iterable[Any]]
"""``checks(target, *, pin=None)``: yields check results with ``name``, ``verdict``,
``detail`` (``drivers.cards.triage.run_triage`` or a stand-in that takes the same arguments)."""


@dataclass(frozen=True)
class CheckView:
    name: str
    verdict: str
    detail: str


@dataclass(frozen=True)
class TriageDetail:
    """``RunSnapshot.detail`` of a triage run: every check finished so far, in order."""

    checks: tuple[CheckView, ...]


@dataclass(frozen=True)
class TriageRun(RunKind):
    name: ClassVar[str] = "triage"
    token_uri: str
    checks: TriageChecks | None = None
    """``None``: :func:`drivers.cards.triage.run_triage`."""

    def planned(self) -> int:
        return 0

    def execute(self, ctx: RunContext) -> tuple[CheckView, ...]:
        from drivers.cards.triage import run_triage

        checks = self.checks or run_triage
        try:
            token = ctx.token(self.token_uri)
        except SafeLabError:
            # Not reachable: the checks say why (link, reader, modem) from the spec itself.
            return self._report(ctx, checks(self.token_uri))
        ctx.describe(token=TokenProvenance.of(token, self.token_uri), condition="triage")
        if token.needs_login:  # a SIM with login=verify: asked once, never retried
            return self._report(ctx, checks(token, pin=ctx.pin(token)))
        return self._report(ctx, checks(token))

    def _report(self, ctx: RunContext, results: Iterable[Any]) -> tuple[CheckView, ...]:
        done: list[CheckView] = []
        for result in results:
            done.append(
                CheckView(
                    str(getattr(result, "name", "?")),
                    str(getattr(result, "verdict", "?")).upper(),
                    str(getattr(result, "detail", "")),
                )
            )
            ctx.post(done=len(done), detail=TriageDetail(tuple(done)))
            if ctx.checkpoint():
                break
        return tuple(done)

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        return f"{len(result)} checks done"
