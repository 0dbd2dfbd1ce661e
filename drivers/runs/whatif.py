"""What-if runs on the run service: a prediction (stored), its validation, the calibration.

:class:`WhatIfRun` predicts a :class:`~drivers.whatif.Scenario` (no token, no peer: the
model only) and stores the prediction as a run of experiment ``whatif`` (its figures and
every input's provenance in the run's extra, no samples: predicted latencies are not
measurements). With ``validate`` it then runs the same scenario for real -- the protocol
against its real peer through the emulated link with the same token (an emulated card at
the scenario's speed), or the pattern with :class:`~drivers.runs.PatternRun`'s engine -- and
returns predicted versus measured with their ratios; the comparison joins the stored
prediction. :class:`WhatIfCalibrationRun` measures the model's loopback constants
(``safelab whatif calibrate``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from drivers.bench.runner import collect_versions
from drivers.errors import RunInterrupted, SafeLabError
from drivers.peers.base import PeerIdentity
from drivers.protocols.base import Condition
from drivers.runs.meta import TokenProvenance
from drivers.runs.service import RunContext, RunKind
from drivers.whatif.calibration import CALIBRATED_PROTOCOLS, Calibration
from drivers.whatif.engine import Prediction, Scenario


@dataclass(frozen=True)
class Measured:
    """The real run's figures beside the prediction."""

    run_id: int
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    miss_rate: float | None = None
    card_utilisation: float | None = None


@dataclass(frozen=True)
class WhatIfResult:
    """What :class:`WhatIfRun` returns: the prediction, stored as ``run_id``, and if asked
    the measured run beside it."""

    prediction: Prediction
    run_id: int
    measured: Measured | None = None
    status: str = "complete"
    reason: str | None = None

    def ratios(self) -> dict[str, float]:
        """predicted / measured for P50, P90, P99 (1.0 = exact)."""
        if self.measured is None:
            return {}
        m, p = self.measured, self.prediction
        return {
            "p50": p.p50 / m.p50_ms if m.p50_ms else float("nan"),
            "p90": p.p90 / m.p90_ms if m.p90_ms else float("nan"),
            "p99": p.p99 / m.p99_ms if m.p99_ms else float("nan"),
        }

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "prediction": self.prediction.summary()}
        if self.measured is not None:
            out["measured"] = self.measured.__dict__
            out["ratio"] = self.ratios()
        return out


def _percentile(data: list[float], p: float) -> float:
    data = sorted(data)
    k = (len(data) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def _describe_peer(ctx: RunContext) -> Callable[[PeerIdentity], None]:
    def on_peer(identity: PeerIdentity) -> None:
        ctx.describe(peer=identity)

    return on_peer


def scenario_token_uri(scenario: Scenario) -> str:
    """The token spec a validation runs: the scenario's, with its card speed if given."""
    uri = scenario.token
    if scenario.speed is not None and uri.startswith("iotsafe:"):
        parts = [p for p in uri.split(";") if not p.strip().startswith("speed=")]
        uri = ";".join([*parts, f"speed={scenario.speed:g}"])
    return uri


@dataclass(frozen=True)
class WhatIfRun(RunKind):
    """A prediction (``safelab whatif``), and with ``validate`` the same scenario measured."""

    name: ClassVar[str] = "whatif"
    scenario: Scenario
    validate: bool = False
    n: int = 20
    """Trials (or pattern events) of the validation."""
    warmup: int = 1
    link_mode: str = "proxy"
    calibration_path: str | None = None
    keep: bool = True
    """Store the prediction (the CLI, a validation); the console's live redraws do not, or
    every keystroke would add a run."""

    def __post_init__(self) -> None:
        if self.validate and self.n < 1:
            raise SafeLabError("a validation needs at least one trial", "give -n 1 or more")
        if not self.scenario.pattern:
            from drivers.protocols.rules import check

            check(self.scenario.protocol, self._condition())

    def _condition(self) -> Condition:
        s = self.scenario
        return Condition(
            resume=s.resume, keep_alive=s.keepalive, reuse_token_session=s.session == "kept"
        )

    def planned(self) -> int:
        return self.n if self.validate else 0

    def execute(self, ctx: RunContext) -> WhatIfResult:
        from drivers.whatif import load_calibration, predict

        calibration = load_calibration(
            Path(self.calibration_path) if self.calibration_path else None
        )
        ctx.post(step="predicting", step_index=1, steps=2 if self.validate else 1)
        scenario = self.scenario
        if self.validate and scenario.pattern and scenario.horizon is None:
            # the validation measures the schedule's first n events: predict those
            scenario = replace(scenario, horizon=self.n)
        prediction = predict(scenario, calibration)
        run_id = self._store(ctx, prediction) if self.keep or self.validate else 0
        measured = None
        if self.validate:
            if ctx.checkpoint():
                return WhatIfResult(
                    prediction, run_id, None, "incomplete", "stopped before the validation"
                )
            ctx.post(step="measuring for real", step_index=2, steps=2)
            measured = self._measure(ctx)
            result = WhatIfResult(prediction, run_id, measured)
            ctx.store.add_extra(
                run_id, {"validation": result.as_dict().get("measured"), "ratio": result.ratios()}
            )
        if run_id:
            ctx.store.finish_run(run_id, "complete")
        return WhatIfResult(prediction, run_id, measured)

    def _store(self, ctx: RunContext, prediction: Prediction) -> int:
        s = self.scenario
        run_id = ctx.store.create_run(
            experiment="whatif",
            mode=f"{s.pattern or s.protocol}:{s.path}:predicted",
            n_planned=len(prediction.samples_ms),
            warmup=0,
            data_len=0,
            hash_on=None,
            threshold_ms=prediction.deadline_ms or 0.0,
            token={
                "kind": "model",
                "uri": s.token,
                "label": f"model of {s.token}",
                "emulated": True,
            },
            versions=collect_versions(),
            extra={"prediction": prediction.summary(), "histogram": prediction.histogram()},
        )
        ctx.stored(run_id)
        return run_id

    def _measure(self, ctx: RunContext) -> Measured:
        s = self.scenario
        uri = scenario_token_uri(s)
        if s.pattern:
            return self._measure_pattern(ctx, uri)
        from drivers.protocols.experiment import run_experiment

        token = ctx.token(uri)
        ctx.describe(token=TokenProvenance.of(token, uri), condition=self._condition().name)
        pin = ctx.pin(token)

        def on_created(run_id: int) -> None:
            ctx.stored(run_id)
            ctx.post(run_id=run_id)

        done = [0]

        def on_trial(idx: int, trial: Any) -> None:
            done[0] += 1
            ctx.post(done=done[0], planned=self.n)

        result = run_experiment(
            s.protocol,
            token,
            self._condition(),
            ctx.store,
            n=self.n,
            warmup=self.warmup,
            pin=pin,
            stop=ctx.checkpoint,
            on_trial=on_trial,
            on_created=on_created,
            on_peer=_describe_peer(ctx),
            link=s.link,
            link_mode=self.link_mode,
        )
        totals = [t / 1e6 for _i, t, _p in ctx.store.samples(result.run_id)]
        if not totals:
            raise SafeLabError("the validation measured nothing", "see the run's reason")
        deadline = s.deadline_ms
        return Measured(
            result.run_id,
            len(totals),
            _percentile(totals, 50),
            _percentile(totals, 90),
            _percentile(totals, 99),
            sum(1 for t in totals if t > deadline) / len(totals) if deadline else None,
        )

    def _measure_pattern(self, ctx: RunContext, uri: str) -> Measured:
        from drivers.runs.pattern import PatternRun

        settings = tuple(f"{k}={v}" for k, v in self.scenario.toggles)
        run = PatternRun(
            self.scenario.pattern or "", uri, settings, events=self.n, link=self.scenario.link
        )
        result = run.execute(ctx)
        totals = [t / 1e6 for _i, t, _p in ctx.store.samples(result.run_id)]
        summary = result.summary
        return Measured(
            result.run_id,
            summary.operations,
            summary.p50_ms,
            _percentile(totals, 90) if totals else float("nan"),
            summary.p99_ms,
            summary.deadline_miss_rate,
            summary.card_busy_pct / 100.0,
        )

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        p = result.prediction
        where = f"what-if run {result.run_id}" if result.run_id else "what-if (not stored)"
        text = f"{where}: predicted P50 {p.p50:.1f} ms, P99 {p.p99:.1f} ms"
        if result.measured is not None:
            m = result.measured
            text += f"; measured P50 {m.p50_ms:.1f} ms, P99 {m.p99_ms:.1f} ms (run {m.run_id})"
        return text


@dataclass(frozen=True)
class CalibrationResult:
    path: Path
    calibration: Calibration
    status: str = "complete"
    reason: str | None = None


@dataclass(frozen=True)
class WhatIfCalibrationRun(RunKind):
    """``safelab whatif calibrate``: each protocol with the software key, straight on
    loopback, through the link proxy at ``rtt=0ms`` and at the two probe RTTs, plus the emulated
    card's host cost; saved to the user's calibration (or ``save_to``)."""

    name: ClassVar[str] = "whatif-calibrate"
    protocols: tuple[str, ...] = CALIBRATED_PROTOCOLS
    n: int = 20
    warmup: int = 1
    save_to: str | None = None
    software_uri: str = "software:p256"

    def __post_init__(self) -> None:
        unknown = [p for p in self.protocols if p not in CALIBRATED_PROTOCOLS]
        if unknown or not self.protocols:
            raise SafeLabError(
                f"cannot calibrate {unknown[0]!r}" if unknown else "no protocol to calibrate",
                f"use some of {', '.join(CALIBRATED_PROTOCOLS)}",
            )
        if self.n < 3:
            raise SafeLabError("calibration needs at least 3 trials per run", "give -n 3 or more")

    def planned(self) -> int:
        return self.n

    def execute(self, ctx: RunContext) -> CalibrationResult:
        from drivers.protocols.experiment import run_experiment
        from drivers.whatif.calibration import calibrate, user_calibration_path

        steps = len(self.protocols) * 4 + 1
        done: list[str] = []

        def step(text: str) -> None:
            if ctx.checkpoint():
                raise RunInterrupted(
                    f"calibration stopped after {len(done)} of {steps} runs",
                    "nothing was saved; run it again to finish",
                )
            done.append(text)
            ctx.post(step=text, step_index=len(done), steps=steps, done=0)

        def run_one(protocol: str, uri: str, link: str | None) -> int:
            token = ctx.token(uri)
            ctx.describe(token=TokenProvenance.of(token, uri))
            pin = ctx.pin(token)

            def on_trial(idx: int, trial: Any) -> None:
                ctx.post(done=idx + 1, planned=self.n)

            result = run_experiment(
                protocol,
                token,
                Condition(),
                ctx.store,
                n=self.n,
                warmup=self.warmup,
                pin=pin,
                on_trial=on_trial,
                on_created=ctx.stored,
                on_peer=_describe_peer(ctx),
                link=link,
            )
            return result.run_id

        calibration = calibrate(
            run_one,
            ctx.store,
            protocols=self.protocols,
            n=self.n,
            warmup=self.warmup,
            software_uri=self.software_uri,
            step=step,
        )
        path = calibration.save(Path(self.save_to) if self.save_to else user_calibration_path())
        return CalibrationResult(path, calibration)

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        rounds = ", ".join(
            f"{name} {cal.measured_round_trips:.2f}"
            for name, cal in result.calibration.protocols.items()
        )
        return f"calibration saved to {result.path} (measured round trips: {rounds})"


__all__ = [
    "CalibrationResult",
    "Measured",
    "WhatIfCalibrationRun",
    "WhatIfResult",
    "WhatIfRun",
    "scenario_token_uri",
]
