"""Protocol runs and the paper's Table 6 on the run service.

:class:`ProtocolRun` is one protocol under one condition against its real peer (``safelab
proto mqtt``, a matrix cell); :class:`Table6Run` is every chosen protocol, software key versus
the token, full and (where :mod:`drivers.protocols.rules` allows) resumed. Both refuse a
condition the rules refuse before opening anything, ask the PIN once through the service,
take the peer's provenance from the peer itself, and store every run as it goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drivers.bench.paper import TABLE6
from drivers.bench.stats import StreamingStats
from drivers.errors import RunInterrupted, SafeLabError
from drivers.peers.base import PeerIdentity
from drivers.protocols.base import PROTOCOL_PHASES, Condition, ProtocolResult, ProtocolTrial
from drivers.protocols.rules import check, resumable
from drivers.runs.meta import TokenProvenance
from drivers.runs.service import RunContext, RunKind

THRESHOLD_MS = 1000.0
"""Only for the statistics object; protocol runs have no paper threshold column."""


@dataclass(frozen=True)
class ProtocolDetail:
    """``RunSnapshot.detail`` of protocol runs: signatures per trial and resumed trials."""

    n_sign: tuple[int, ...]
    resumed: int


class _Live:
    """Statistics of the trials of one protocol run, posted at most every ``interval_s``."""

    def __init__(self, ctx: RunContext, planned: int, interval_s: float) -> None:
        self.ctx = ctx
        self.planned = planned
        self.interval_s = interval_s
        self.stats = StreamingStats(THRESHOLD_MS, phases=PROTOCOL_PHASES)
        self.n_sign: list[int] = []
        self.resumed = 0
        self.run_id = 0
        self._last = 0.0

    def created(self, run_id: int) -> None:
        self.run_id = run_id
        self.ctx.stored(run_id)
        self.post()

    def trial(self, idx: int, trial: ProtocolTrial) -> None:
        self.stats.add(trial.total_ns, trial.phases)
        self.n_sign.append(trial.n_sign)
        self.resumed += int(trial.resumed)
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self.post()

    def post(self, result: ProtocolResult | None = None) -> None:
        self.ctx.post(
            run_id=self.run_id,
            done=self.stats.count,
            planned=self.planned,
            stats=result.stats if result is not None else self.stats.snapshot(),
            histogram=self.stats.histogram(),
            detail=ProtocolDetail(tuple(self.n_sign), self.resumed),
        )


@dataclass(frozen=True)
class ProtocolRun(RunKind):
    """One protocol × condition on one token (the CLI's ``safelab proto P``, a matrix cell)."""

    name: ClassVar[str] = "proto"
    protocol: str
    token_uri: str
    condition: Condition = field(default_factory=Condition)
    n: int = 30
    warmup: int = 1
    progress_interval_s: float = 0.15

    def __post_init__(self) -> None:
        check(self.protocol, self.condition)  # refused here: before a thread or a token
        if self.n < 1 or self.warmup < 0:
            raise SafeLabError("n must be at least 1 and warm-up at least 0", "fix -n/--warmup")

    def planned(self) -> int:
        return self.n

    def execute(self, ctx: RunContext) -> ProtocolResult:
        from drivers.protocols.experiment import run_experiment

        token = ctx.token(self.token_uri)
        ctx.describe(token=TokenProvenance.of(token, self.token_uri), condition=self.condition.name)
        pin = ctx.pin(token)
        live = _Live(ctx, self.n, self.progress_interval_s)

        def on_peer(identity: PeerIdentity) -> None:
            ctx.describe(peer=identity)

        result = run_experiment(
            self.protocol,
            token,
            self.condition,
            ctx.store,
            n=self.n,
            warmup=self.warmup,
            pin=pin,
            stop=ctx.checkpoint,
            on_trial=live.trial,
            on_peer=on_peer,
            on_created=live.created,
        )
        established = str(ctx.store.get_run(result.run_id).extra.get("established_at") or "")
        ctx.describe(established_at=established)
        live.post(result)
        return result

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        text = f"{self.protocol} {self.condition.name}: run {result.run_id} {result.status}"
        return text + (f" ({result.reason})" if result.reason else "")


@dataclass(frozen=True)
class Table6Result:
    """What :class:`Table6Run` returns: the rows and who answered each protocol."""

    rows: tuple[Any, ...]
    """:class:`~drivers.protocols.experiment.Table6Row`, one per protocol."""
    peers: dict[str, PeerIdentity]
    token: TokenProvenance
    status: str = "complete"


@dataclass(frozen=True)
class Table6Run(RunKind):
    """Table 6: per protocol, the software key and the token, full and resumed where allowed.

    A stop ends it between runs (the finished runs stay in the store) with a
    :class:`RunInterrupted` saying how far it got; a pause waits between trials.
    """

    name: ClassVar[str] = "table6"
    token_uri: str
    protocols: tuple[str, ...] = ("vpn", "mqtt", "coap", "https")
    n: int = 30
    warmup: int = 1
    software_uri: str = "software:p256"
    progress_interval_s: float = 0.15

    def __post_init__(self) -> None:
        unknown = [p for p in self.protocols if p not in TABLE6]
        if unknown or not self.protocols:
            raise SafeLabError(
                f"unknown protocol {unknown[0]!r} for Table 6" if unknown else "no protocol given",
                "list some of vpn,mqtt,coap,https",
            )

    def steps(self) -> int:
        """How many runs it makes: software and token, full (and resumed)."""
        return table6_steps(self.protocols)

    def planned(self) -> int:
        return self.n

    def execute(self, ctx: RunContext) -> Table6Result:
        from drivers.peers.pki import LabPki
        from drivers.protocols.experiment import peer_for, run_experiment, table6_row

        token = ctx.token(self.token_uri)
        provenance = TokenProvenance.of(token, self.token_uri)
        ctx.describe(token=provenance, condition="full+resumed")
        pin = ctx.pin(token)
        software = ctx.token(self.software_uri)
        pki = LabPki()
        steps, step = self.steps(), 0
        ctx.post(steps=steps, step="starting")
        rows, peers = [], {}
        for protocol in self.protocols:
            results: dict[tuple[str, bool], ProtocolResult] = {}
            with peer_for(protocol, pki) as peer:  # one peer for the protocol's four runs
                peers[protocol] = peer.identity
                ctx.describe(peer=peer.identity)
                for resume in (False, True) if resumable(protocol) else (False,):
                    for who, which, which_pin in (
                        ("software", software, None),
                        ("token", token, pin),
                    ):
                        if ctx.checkpoint():
                            raise RunInterrupted(
                                f"Table 6 stopped by the user after {step} of {steps} runs",
                                "the finished runs are in the store (safelab runs list)",
                            )
                        step += 1
                        text = f"{protocol} {'resumed' if resume else 'full'} {who}"
                        ctx.post(step=text, step_index=step, done=0)
                        live = _Live(ctx, self.n, self.progress_interval_s)
                        result = results[(who, resume)] = run_experiment(
                            protocol,
                            which,
                            Condition(resume=resume),
                            ctx.store,
                            n=self.n,
                            warmup=self.warmup,
                            pin=which_pin,
                            pki=pki,
                            peer=peer,
                            stop=_pause_only(ctx),
                            on_trial=live.trial,
                            on_created=live.created,
                        )
                        live.post(result)
            rows.append(table6_row(protocol, results))
        return Table6Result(tuple(rows), peers, provenance)

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        runs = f"runs {run_ids[0]}–{run_ids[-1]}" if run_ids else "no runs"
        return f"Table 6 complete ({runs} in the store)"


def _pause_only(ctx: RunContext) -> Any:
    """Inside one Table 6 run a pause waits; a stop waits for the run's end (between runs)."""

    def check() -> bool:
        ctx.checkpoint()
        return False

    return check


def table6_steps(protocols: tuple[str, ...] | list[str]) -> int:
    """How many runs Table 6 makes for ``protocols``: 4 where resumable, else 2."""
    return sum(4 if resumable(p) else 2 for p in protocols)
