"""Pattern runs on the run service: one pattern live with toggles flipped while it runs
(:class:`PatternRun`), and two toggle combinations taking turns (:class:`PatternCompareRun`).

Both refuse an unknown pattern, a bad parameter or a toggle the rules refuse
(:func:`drivers.protocols.rules.toggle_refusal`) before a thread, a token or a peer exists.
Samples are stored as they come (experiment ``pattern``): the request-path latency as the
total, and ``auth``, ``n_sign``, ``attempts``, ``connected``, ``resumed``, ``reused``,
``missed``, ``failed`` and ``flip`` (how many toggle flips were in force) per event; the run's
extra holds the pattern, its Table 7 row, the toggles, the flips and the summary.

Live flips: ``spec.flip("preauth", "on")`` from any thread (the console's key) -- checked by
the rules at once (a refused flip raises and changes nothing), applied at the next event.
``PatternRun(..., until_stopped=True)`` keeps the workload going until the handle is stopped
(the console's Optimisation job); what ran is stored ``incomplete``, as any stopped run.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drivers.bench.runner import collect_versions
from drivers.bench.stats import StreamingStats
from drivers.errors import SafeLabError
from drivers.patterns.engine import OpSample, Segment, Workload, make_device, peer_protocol
from drivers.patterns.faults import WatchedToken
from drivers.patterns.metrics import PatternSummary, delta
from drivers.patterns.profile import PatternProfile, load_pattern
from drivers.patterns.toggles import ToggleBoard, Toggles, parse_settings
from drivers.protocols.rules import check_toggles
from drivers.runs.meta import TokenProvenance
from drivers.runs.service import RunContext, RunKind

RECENT = 300
"""Latencies kept in a snapshot for the live time series."""


@dataclass(frozen=True)
class PatternDetail:
    """``RunSnapshot.detail`` of pattern runs: the live summary, the recent request-path
    latencies ``(event index, ms, flip number)`` and the flips so far."""

    summary: PatternSummary | None
    recent: tuple[tuple[int, float, int], ...]
    flips: tuple[tuple[int, str], ...]
    budget_ms: float
    side: str = ""
    segments: tuple[Segment, ...] = ()
    """One per toggle combination in force so far (before/after each flip)."""
    faults: tuple[tuple[int, str], ...] = ()
    """Faults injected live so far: (event index, kind)."""


@dataclass(frozen=True)
class PatternResult:
    run_id: int
    summary: PatternSummary
    toggles: Toggles
    flips: tuple[tuple[int, str], ...]
    status: str = "complete"
    reason: str | None = None
    segments: tuple[Segment, ...] = ()
    """Before/after each flip (one per toggle combination in force)."""


@dataclass(frozen=True)
class CompareResult:
    a: PatternResult
    b: PatternResult
    status: str = "complete"
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for side, result in (("a", self.a), ("b", self.b)):
            out[side] = {
                "toggles": result.toggles.label,
                "run_id": result.run_id,
                **result.summary.as_dict(),
            }
        out.update(delta(self.a.summary, self.b.summary))
        return out


def _profile(pattern: str, settings: tuple[str, ...]) -> tuple[PatternProfile, Toggles]:
    toggles, params = parse_settings(settings)
    profile = load_pattern(pattern).with_overrides(params)
    if not profile.runnable:
        raise SafeLabError(
            f"pattern {pattern!r} is not runnable yet ({profile.title})",
            "see `safelab pattern list` for the runnable patterns",
        )
    check_toggles(profile.transport, toggles)
    return profile, toggles


class _Side:
    """One toggle combination's device, watched token, store run and live figures."""

    def __init__(
        self,
        ctx: RunContext,
        profile: PatternProfile,
        token: Any,
        pin: Any,
        board: ToggleBoard,
        target: Any,
        pki: Any,
        planned: int,
        extra: dict[str, Any],
        label: str = "",
    ) -> None:
        from drivers.tls.signer import TokenSigner

        self.ctx, self.profile, self.board, self.label = ctx, profile, board, label
        toggles, _ = board.current()
        self.watch = WatchedToken(token)
        self.signer = TokenSigner(
            self.watch,  # type: ignore[arg-type]
            pin=pin,
            reuse_session=toggles.token_session == "kept",
        )
        ctx.keep(contextlib.closing(self.signer))
        self.device = make_device(profile, self.watch, self.signer, toggles, target, pki)
        ctx.keep(contextlib.closing(self.device))
        self.stats = StreamingStats(profile.budget_ms, phases=("auth",))
        self.recent: list[tuple[int, float, int]] = []
        self.buffer: list[tuple[int, int, dict[str, int]]] = []
        self.workload = Workload(profile, self.device, self.watch, board)
        self.run_id = ctx.store.create_run(
            experiment="pattern",
            mode=f"{profile.name}:{toggles.label}",
            n_planned=planned,
            warmup=0,
            data_len=int(profile.param("payload_bytes", 0)),
            hash_on=toggles.hash_on,
            threshold_ms=profile.budget_ms,
            token=token.info.as_dict(),
            versions=collect_versions(),
            extra={
                "pattern": profile.name,
                "table7": profile.table7,
                "workload": profile.workload,
                "transport": profile.transport,
                "params": profile.params,
                "budget_ms": profile.budget_ms,
                "toggles": toggles.as_dict(),
                "request_path": "event occurs -> delivered and acknowledged",
                **extra,
            },
        )
        ctx.stored(self.run_id)
        self._flushed = time.monotonic()
        self.started = time.monotonic()

    def add(self, sample: OpSample) -> None:
        if sample.ok:
            self.stats.add(sample.latency_ns, {"auth": sample.result.auth_ns})
        self.recent.append((sample.index, sample.latency_ns / 1e6, sample.flip))
        del self.recent[:-RECENT]
        self.buffer.append(sample.as_sample())
        if time.monotonic() - self._flushed > 0.25:
            self.flush()

    def flush(self) -> None:
        self.ctx.store.add_samples(self.run_id, self.buffer)
        self.buffer.clear()
        self._flushed = time.monotonic()

    def detail(self) -> PatternDetail:
        summary = self.workload.summary(time.monotonic() - self.started)
        return PatternDetail(
            summary,
            tuple(self.recent),
            tuple(self.board.log()),
            self.profile.budget_ms,
            self.label,
            self.workload.segments(),
            tuple(self.workload.injected),
        )

    def finish(self, status: str, reason: str | None) -> PatternResult:
        self.flush()
        summary = self.workload.summary(time.monotonic() - self.started)
        toggles, _ = self.board.current()
        flips = tuple(self.board.log())
        segments = self.workload.segments()
        self.ctx.store.add_extra(
            self.run_id,
            {
                "summary": summary.as_dict(),
                "flips": [list(f) for f in flips],
                "segments": [vars(s) for s in segments],
                "faults_injected": [list(f) for f in self.workload.injected],
            },
        )
        self.ctx.store.finish_run(self.run_id, status, reason)
        return PatternResult(self.run_id, summary, toggles, flips, status, reason, segments)


def _target(
    ctx: RunContext, profile: PatternProfile, toggles: Toggles, link: str | None
) -> tuple[Any, Any, Any]:
    """Start the pattern's peer for the run; behind an emulated link if asked. Returns what
    the device connects to, the lab PKI and the peer itself (for a restart)."""
    from drivers.peers.pki import LabPki
    from drivers.protocols.experiment import PeerBehindLink, link_transport, peer_for

    pki = LabPki()
    protocol = peer_protocol(profile.transport, toggles.psk)
    peer = ctx.peer(peer_for(protocol, pki))
    ctx.describe(peer=peer.identity)
    target: Any = peer
    if link:
        from drivers.links import open_link

        endpoint = ctx.keep(
            open_link(
                link,
                link_transport(protocol, peer),  # type: ignore[arg-type]
                target=(peer.host, peer.port),
                mode="proxy",
            )
        )
        ctx.keep(endpoint.client_context())
        target = PeerBehindLink(peer, endpoint.address)
    return target, pki, peer


@dataclass(frozen=True)
class PatternRun(RunKind):
    """One pattern on one token with toggles (``safelab pattern run NAME``); flips live."""

    name: ClassVar[str] = "pattern"
    pattern: str
    token_uri: str
    settings: tuple[str, ...] = ()
    """``--set`` text: toggles (``preauth=on``) and parameter overrides (``period_s=0.1``)."""
    events: int | None = None
    duration_s: float | None = None
    until_stopped: bool = False
    """Run until :meth:`RunHandle.stop` (the console's live workload): no event or time
    limit; the partial run is stored ``incomplete`` with every event measured so far."""
    link: str | None = None
    outage: tuple[float, float] | None = None
    """A card outage injected at (seconds after start, lasting seconds)."""
    reset_at: float | None = None
    """Reset the open connection this long after the start (TCP RST; the peer keeps state)."""
    restart_peer_at: float | None = None
    """Restart the real peer (stop, start on the same port) this long after the start."""
    slow: tuple[float, float, float] | None = None
    """A slow card: (at s, for s, each access delayed s)."""
    progress_interval_s: float = 0.2
    board: ToggleBoard = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        profile, toggles = _profile(self.pattern, self.settings)
        if self.until_stopped and (self.events is not None or self.duration_s is not None):
            raise SafeLabError(
                "a run until stopped takes no event count or duration",
                "give until_stopped, or events/duration, not both",
            )
        if self.events is None and self.duration_s is None and not self.until_stopped:
            object.__setattr__(self, "events", 20)
        if (self.events is not None and self.events < 1) or (
            self.duration_s is not None and self.duration_s <= 0
        ):
            raise SafeLabError("events and duration must be positive", "fix --events/--duration")
        if self.link:
            from drivers.links import parse_link

            parse_link(self.link)
        object.__setattr__(self, "board", ToggleBoard(profile.transport, toggles))

    @property
    def profile(self) -> PatternProfile:
        return _profile(self.pattern, self.settings)[0]

    def flip(self, toggle: str, value: str) -> Toggles:
        """Flip a toggle while the run runs (any thread); refused flips raise SafeLabError."""
        return self.board.flip(toggle, value)

    def inject(self, fault: str, seconds: float = 5.0) -> None:
        """Inject a fault at the next event (any thread): ``card-outage`` for ``seconds``,
        ``reset`` or ``peer-restart``; stored in the run's ``extra.faults_injected``."""
        self.board.inject(fault, seconds)

    def planned(self) -> int:
        return self.events or 0

    def execute(self, ctx: RunContext) -> PatternResult:
        profile = self.profile
        toggles, _ = self.board.current()
        token = ctx.token(self.token_uri)
        ctx.describe(token=TokenProvenance.of(token, self.token_uri), condition=toggles.label)
        pin = ctx.pin(token)
        target, pki, peer = _target(ctx, profile, toggles, self.link)
        side = _Side(
            ctx,
            profile,
            token,
            pin,
            self.board,
            target,
            pki,
            self.planned(),
            {
                "link": self.link,
                "outage": list(self.outage) if self.outage else None,
                "reset_at": self.reset_at,
                "restart_peer_at": self.restart_peer_at,
                "slow": list(self.slow) if self.slow else None,
            },
        )
        workload = side.workload
        workload.events, workload.duration_s = self.events, self.duration_s
        workload.outage, workload.reset_at = self.outage, self.reset_at
        workload.restart_at, workload.restart = self.restart_peer_at, peer.restart
        workload.slow = self.slow
        workload.stop = ctx.checkpoint
        last = [0.0]

        def on_op(sample: OpSample) -> None:
            side.add(sample)
            now = time.monotonic()
            if now - last[0] >= self.progress_interval_s:
                last[0] = now
                self._post(ctx, side)

        workload.on_op = on_op
        status, reason = "complete", None
        try:
            workload.run()
        except SafeLabError as exc:
            side.finish("incomplete", exc.one_line())
            raise
        if ctx.stop_requested:
            status, reason = (
                "incomplete",
                f"stopped by the user after {len(workload.samples)} events",
            )
        result = side.finish(status, reason)
        self._post(ctx, side)
        return result

    def _post(self, ctx: RunContext, side: _Side) -> None:
        ctx.post(
            run_id=side.run_id,
            done=len(side.workload.samples),
            planned=self.planned(),
            stats=side.stats.snapshot(),
            histogram=side.stats.histogram(),
            detail=side.detail(),
        )

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        s = result.summary
        text = (
            f"{self.pattern} {result.toggles.label}: run {result.run_id} {result.status}, "
            f"P50 {s.p50_ms:.1f} ms, P99 {s.p99_ms:.1f} ms, misses {s.deadline_miss_rate:.0%}, "
            f"{s.signatures} signatures"
        )
        return text + (f" ({result.reason})" if result.reason else "")


@dataclass(frozen=True)
class PatternCompareRun(RunKind):
    """A/B: two toggle combinations on one peer and token, events taking turns (ABAB…), so
    drift cannot bias the delta; each side is its own stored run naming the other."""

    name: ClassVar[str] = "pattern-compare"
    pattern: str
    token_uri: str
    a: tuple[str, ...] = ()
    b: tuple[str, ...] = ()
    events: int = 20
    """Events per side."""
    settings: tuple[str, ...] = ()
    """Parameter overrides for both sides (``period_s=0.1``)."""
    progress_interval_s: float = 0.2

    def __post_init__(self) -> None:
        for side in (self.a, self.b):
            _profile(self.pattern, self.settings + side)
        _, ta = parse_settings(self.a)
        _, tb = parse_settings(self.b)
        if ta or tb:
            raise SafeLabError(
                f"--a/--b take toggles only, not parameters ({', '.join({**ta, **tb})})",
                "give parameters with --set",
            )
        if self.events < 1:
            raise SafeLabError("events must be at least 1", "fix --events")

    def planned(self) -> int:
        return self.events

    def execute(self, ctx: RunContext) -> CompareResult:
        import random

        profiles = [_profile(self.pattern, self.settings + s) for s in (self.a, self.b)]
        profile = profiles[0][0]
        token = ctx.token(self.token_uri)
        ctx.describe(
            token=TokenProvenance.of(token, self.token_uri),
            condition=f"A {profiles[0][1].label} / B {profiles[1][1].label}",
        )
        pin = ctx.pin(token)
        target, pki, _ = _target(ctx, profile, profiles[0][1], None)
        sides = [
            _Side(
                ctx,
                profile,
                token,
                pin,
                ToggleBoard(profile.transport, toggles),
                target,
                pki,
                self.events,
                {"compare": label},
                label,
            )
            for (_, toggles), label in zip(profiles, ("A", "B"), strict=True)
        ]
        for side, other in zip(sides, reversed(sides), strict=True):
            ctx.store.add_extra(side.run_id, {"interleaved_with": [other.run_id]})
        for side in sides:
            side.device.wait_prepared()
        rng = random.Random(int(profile.param("seed", 13)))
        mean = float(profile.param("mean_interval_s", profile.param("period_s", 1.0)))
        size = int(profile.param("payload_bytes", 32))
        budget_ns = int(profile.budget_ms * 1e6)
        due = time.monotonic()
        last = 0.0
        status, reason = "complete", None
        try:
            for index in range(self.events):
                for side in sides:
                    if ctx.checkpoint():
                        status, reason = "incomplete", f"stopped after {index} rounds"
                        break
                    gap = rng.expovariate(1.0 / mean) if profile.workload == "poisson" else mean
                    due += gap
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    sample = side.workload.one(index, due, size, budget_ns)
                    side.workload.samples.append(sample)
                    side.add(sample)
                if status != "complete":
                    break
                if time.monotonic() - last > self.progress_interval_s:
                    last = time.monotonic()
                    ctx.post(
                        run_id=sides[1].run_id,
                        done=index + 1,
                        planned=self.events,
                        detail=(sides[0].detail(), sides[1].detail()),
                    )
        except SafeLabError as exc:
            for side in sides:
                side.finish("incomplete", exc.one_line())
            raise
        a, b = (side.finish(status, reason) for side in sides)
        return CompareResult(a, b, status, reason)

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        d = delta(result.a.summary, result.b.summary)["delta"]
        return (
            f"{self.pattern} A/B: runs {result.a.run_id} and {result.b.run_id} "
            f"{result.status}; B-A P50 {d['p50_ms']:+.1f} ms, signatures {d['signatures']:+.0f}"
        )
