"""SSDTF flows and attacks on the run service.

:class:`SsdtfFlowRun` is one whole SSDTF system (``safelab ssdtf demo``, the packet
stepper's live flow); :class:`SsdtfAttackRun` is one attack of :mod:`drivers.ssdtf.attacks`
on fresh deployments (``safelab ssdtf attack``, the stepper's attack menu). Both:

- open sensor-1's token once through the service (``ctx.token``) and lend it to every
  deployment they build (:attr:`FlowConfig.token_lent`), so the token is opened once and
  closed once per run, however many deployments an attack needs;
- ask its PIN in the one PIN step (``ctx.pin``) before any deployment exists; the spec never
  carries a PIN;
- name the broker from the broker itself (:func:`broker_identity`: embedded amqtt and its
  version, Mosquitto and its version, or an external broker);
- post frozen trace rows (:class:`~drivers.runs.packets.PacketRow`) in their snapshots'
  ``detail`` and store a run (experiment ``ssdtf`` / ``ssdtf-attack``) so Results lists it:
  a flow's row is created once its sensors logged in, with the sensors' handshake times as
  samples and the flow's summary in its extra fields; an attack's once it ran, with its
  verdict. A cancelled or wrong PIN stores nothing.

A live flow is stepped through :class:`FlowControls` (``detail.controls``): ``step``,
``run_to_end``, ``pause``; the handle's own ``pause``/``resume``/``stop`` map to pause, run on
and release-to-the-end, so a held flow never waits for its hour-long stepping deadlines.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.errors import SafeLabError
from drivers.peers.base import PeerIdentity, program_version
from drivers.runs.meta import TokenProvenance
from drivers.runs.packets import PacketRow, RowCopier
from drivers.runs.service import RunContext, RunKind
from drivers.ssdtf.config import FlowConfig

if TYPE_CHECKING:
    from drivers.ssdtf.attacks import AttackOutcome
    from drivers.ssdtf.deployment import Deployment, RunResult
    from drivers.ssdtf.tap import Tap
    from drivers.ssdtf.trace import Trace
    from drivers.tokens.base import Token

THRESHOLD_MS = 1000.0
"""Only for the statistics of the stored handshake times; SSDTF has no paper threshold."""

FRESH_KEYS = {"kind": "software", "uri": "", "label": "fresh software keys", "emulated": False}
"""The token column of a run whose sensors all got fresh software keys (no ``token``)."""


def broker_identity(spec: str, broker: object | None = None) -> PeerIdentity:
    """What the SSDTF broker is, said by the broker object (or, before it exists, its spec).

    The SSDTF brokers are not :class:`~drivers.peers.base.Peer` objects, so this names them
    the same way peers name themselves: embedded amqtt with the library's version, Mosquitto
    with the binary's, an external broker with its address (its version is not known).
    """
    kind = str(getattr(broker, "kind", "") or ("external" if spec.startswith("mqtt://") else spec))
    if kind == "embedded":
        try:
            version = f"amqtt {metadata.version('amqtt')}"
        except metadata.PackageNotFoundError:
            version = "unknown"
        return PeerIdentity("amqtt (embedded SSDTF broker)", True, version)
    if kind == "mosquitto":
        binary = str(
            getattr(broker, "binary", "") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        )
        return PeerIdentity("mosquitto", False, program_version(binary, ("-h",)))
    return PeerIdentity(f"external MQTT broker {spec}", False, "unknown")


def _check(config: FlowConfig) -> None:
    """Refuse a spec that cannot run, before a thread, a token or a broker exists."""
    if config.token_pin is not None or config.token_lent is not None:
        raise SafeLabError(
            "an SSDTF run spec carries no PIN and no opened token",
            "give the PIN through the run's PIN provider; the run opens the token itself",
        )
    if config.model not in (1, 2, 3):
        raise SafeLabError(f"service model {config.model} does not exist", "use 1, 2 or 3")
    if config.sensors < 1 or config.users < 1 or config.messages < 0:
        raise SafeLabError(
            "an SSDTF run needs at least one sensor and one user, and messages ≥ 0",
            "fix --sensors/--users/--messages",
        )


def _lend_token(ctx: RunContext, config: FlowConfig) -> tuple[FlowConfig, Token | None]:
    """Open sensor-1's token once for the run, ask its PIN once, lend both to deployments."""
    if not config.token:
        return config, None
    token = ctx.token(config.token)
    ctx.describe(token=TokenProvenance.of(token, config.token))
    pin = ctx.pin(token)
    return replace(config, token_pin=pin, token_lent=token), token


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (sets, tuples, bytes and paths become lists/strings)."""
    return json.loads(json.dumps(value, default=str))


def _create_run(
    ctx: RunContext,
    token: Token | None,
    peer: PeerIdentity,
    *,
    experiment: str,
    mode: str,
    n_planned: int,
    extra: dict[str, Any],
) -> int:
    from drivers.bench.runner import collect_versions

    run_id = ctx.store.create_run(
        experiment=experiment,
        mode=mode,
        n_planned=n_planned,
        warmup=0,
        data_len=0,
        hash_on="host",
        threshold_ms=THRESHOLD_MS,
        token=token.info.as_dict() if token is not None else dict(FRESH_KEYS),
        versions=collect_versions(),
        extra=_jsonable(
            {
                **extra,
                "peer": peer.name,
                "peer_embedded": peer.embedded,
                "peer_version": peer.version,
            }
        ),
    )
    ctx.stored(run_id)
    return run_id


# -- the live flow ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowControls:
    """The stepper of a live flow, for a front end: thread-safe, every call returns at once.

    Before the tap's loop runs (the deployment is still starting) ``step`` does nothing and
    ``run_to_end`` only stops pausing, which the tap honours from its first packet on.
    """

    tap: Tap | None = field(default=None, repr=False, compare=False)

    @property
    def stepping(self) -> bool:
        """True while the tap holds every packet until :meth:`step`."""
        return self.tap is not None and self.tap.stepper.stepping

    def step(self, count: int = 1) -> None:
        """Forward the held packet (and the next ``count - 1``)."""
        if self.tap is not None and self.tap.loop is not None:
            self.tap.stepper.step(count)

    def run_to_end(self) -> None:
        """Stop pausing: forward everything from now on."""
        if self.tap is None:
            return
        if self.tap.loop is not None:
            self.tap.stepper.run_to_end()
        else:
            self.tap.stepper.stepping = False

    def pause(self) -> None:
        """Hold the next packet again."""
        if self.tap is not None:
            self.tap.stepper.pause()

    # The run handle's controls (ctx.follow): resume runs on, stop releases to the end.
    def resume(self) -> None:
        self.run_to_end()

    def stop(self) -> None:
        self.run_to_end()


@dataclass(frozen=True)
class FlowDetail:
    """``RunSnapshot.detail`` of :class:`SsdtfFlowRun`: the trace so far, frozen, and controls.

    ``trace`` is the live trace itself, for what rows do not copy: ``keys_at`` (what every
    role holds at a packet) and the JSON/pcap export; its methods lock, so any thread may call
    them. ``done`` is True once the deployment stopped (the run may still be storing).
    """

    rows: tuple[PacketRow, ...]
    lanes: tuple[str, ...]
    controls: FlowControls
    trace: Trace = field(repr=False, compare=False)
    done: bool = False
    delivered: int = 0
    expected: int = 0


@dataclass(frozen=True)
class SsdtfFlowResult:
    """What :class:`SsdtfFlowRun` returns: the deployment's summary, its trace, the stored run."""

    summary: RunResult
    trace: Trace
    run_id: int
    status: str
    reason: str | None = None


class _Deploying(threading.Thread):
    """``Deployment.run_all`` in a thread, keeping its result or whatever it raised."""

    def __init__(self, deployment: Deployment, timeout_s: float) -> None:
        super().__init__(name="ssdtf-flow", daemon=True)
        self.deployment = deployment
        self.timeout_s = timeout_s
        self.result: RunResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.deployment.run_all(timeout=self.timeout_s)
        except BaseException as exc:  # handed to the run's thread, which reports it
            self.error = exc


@dataclass(frozen=True)
class SsdtfFlowRun(RunKind):
    """One SSDTF system: handshakes, readings, re-encryption, delivery; live or at full speed.

    For the stepper give ``config.for_stepping()``: the tap then holds every packet until
    ``detail.controls.step()``. ``live`` copies the trace into snapshot rows as it grows
    (the console); without it only progress counts are posted (the CLI).
    """

    name: ClassVar[str] = "ssdtf"
    config: FlowConfig = field(default_factory=FlowConfig)
    timeout_s: float | None = None
    """How long readings may take to arrive; ``None``: the stepping deadline when stepping,
    else 50 ms a reading (at least 10 s)."""
    live: bool = True
    poll_interval_s: float = 0.1
    """How often a busy trace is copied: live, yet a burst of packets is one snapshot."""

    def __post_init__(self) -> None:
        _check(self.config)

    @property
    def expected(self) -> int:
        """Readings the data users should receive in all."""
        cfg = self.config
        return cfg.messages * cfg.sensors * cfg.users

    def planned(self) -> int:
        return self.expected

    def wait_s(self) -> float:
        if self.timeout_s is not None:
            return self.timeout_s
        cfg = self.config
        return (
            cfg.connect_timeout_s if cfg.stepping else max(10.0, cfg.messages * cfg.sensors * 0.05)
        )

    def execute(self, ctx: RunContext) -> SsdtfFlowResult:
        from drivers.ssdtf.deployment import Deployment

        cfg, token = _lend_token(ctx, self.config)
        ctx.describe(condition=f"model {cfg.model}")
        dep = Deployment(cfg)  # sensors log in here: a wrong PIN ends the run, nothing stored
        peer = broker_identity(cfg.broker, dep.broker)
        ctx.describe(peer=peer)
        run_id = _create_run(
            ctx,
            token,
            peer,
            experiment="ssdtf",
            mode=f"ssdtf:m{cfg.model}",
            n_planned=cfg.sensors,
            extra={
                "times": "sensor handshake (HELLO to READY)",
                "model": cfg.model,
                "sensors": cfg.sensors,
                "messages": cfg.messages,
                "users": cfg.users,
                "broker": cfg.broker,
                "pre": dep.pre.name,
                "stepping": cfg.stepping,
            },
        )
        controls = FlowControls(dep.tap)
        ctx.follow(controls)
        worker = _Deploying(dep, self.wait_s())
        worker.start()
        try:
            self._watch(ctx, dep, worker, controls, run_id)
        finally:
            if worker.is_alive():  # the watch failed: never leave a held flow waiting an hour
                controls.run_to_end()
                worker.join()
        return self._stored(ctx, dep, worker, run_id)

    def _watch(
        self,
        ctx: RunContext,
        dep: Deployment,
        worker: _Deploying,
        controls: FlowControls,
        run_id: int,
    ) -> None:
        """Post the trace (rows when ``live``) and the delivered count until the flow ends."""
        wake = threading.Event()
        dep.trace.subscribe(lambda kind, obj: wake.set())
        copy = RowCopier()
        last: tuple[PacketRow, ...] | None = None
        while True:
            wake.wait(0.5)
            wake.clear()
            done = not worker.is_alive()
            delivered = sum(len(user.readings) for user in dep.users.values())
            rows = copy(dep.trace) if self.live else ()
            if rows != last or done or not self.live:
                last = rows
                ctx.post(
                    run_id=run_id,
                    done=delivered,
                    detail=FlowDetail(
                        rows,
                        tuple(dep.trace.lanes()) if self.live else (),
                        controls,
                        dep.trace,
                        done,
                        delivered,
                        self.expected,
                    ),
                )
            if done:
                return
            time.sleep(self.poll_interval_s)

    def _stored(
        self, ctx: RunContext, dep: Deployment, worker: _Deploying, run_id: int
    ) -> SsdtfFlowResult:
        """Store the handshake times and the summary; raise what the deployment raised."""
        error = worker.error
        summary = worker.result if worker.result is not None else dep.result()  # after stop
        samples: list[tuple[int, int, dict[str, int]]] = [
            (index, int(info["handshake_ms"] * 1e6), {})
            for index, info in enumerate(summary.sensors.values())
            if info.get("handshake_ms") is not None
        ]
        ctx.store.add_samples(run_id, samples)
        ctx.store.add_extra(run_id, _jsonable({"summary": summary.as_dict()}))
        delivered = sum(int(user["received"]) for user in summary.users.values())
        if error is not None:
            why = error.one_line() if isinstance(error, SafeLabError) else repr(error)
            ctx.store.finish_run(run_id, "incomplete", why)
            if isinstance(error, SafeLabError):
                raise error
            raise SafeLabError(
                f"the SSDTF flow failed: {type(error).__name__}: {error}",
                "what it captured is in the trace and the stored run",
            ) from error
        status = "complete" if summary.ok else "incomplete"
        reason = None if summary.ok else f"{delivered} of {self.expected} readings delivered"
        ctx.store.finish_run(run_id, status, reason)
        return SsdtfFlowResult(summary, dep.trace, run_id, status, reason)

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        text = f"SSDTF model {self.config.model}: run {result.run_id} {result.status}"
        return text + (f" ({result.reason})" if result.reason else "")


# -- attacks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackDetail:
    """``RunSnapshot.detail`` of :class:`SsdtfAttackRun` once the attack ran: its trace rows
    and where it was rejected (``packet``: the rejecting packet's index, if the check found
    one)."""

    rows: tuple[PacketRow, ...]
    lanes: tuple[str, ...]
    trace: Trace | None = field(repr=False, compare=False)
    outcome: AttackOutcome = field(repr=False, compare=False)


@dataclass(frozen=True)
class SsdtfAttackResult:
    """What :class:`SsdtfAttackRun` returns: the driver's outcome and the stored run."""

    outcome: AttackOutcome
    run_id: int
    status: str = "complete"

    @property
    def verdict(self) -> str:
        """One line: ``rejected by gateway at #12: ...``, ``control verified: ...``."""
        o = self.outcome
        if o.control:
            return f"control {'verified' if o.rejected else 'FAILED'}: {o.reason}"
        if o.rejected:
            where = f" at #{o.packet}" if o.packet is not None else ""
            return f"rejected by {o.role}{where}: {o.reason}"
        return "NOT rejected as expected (expected " + expected_text(o.expected) + ")"


def outcome_dict(outcome: AttackOutcome) -> dict[str, Any]:
    """The outcome as plain JSON types, without its trace (exported on its own).

    Built field by field: ``AttackOutcome.as_dict`` deep-copies the trace first, and a trace
    holds a lock, so it cannot be copied.
    """
    out = {
        f.name: getattr(outcome, f.name)
        for f in dataclasses.fields(outcome)
        if f.name not in ("trace", "expected")
    }
    out["expected"] = [f"{role}: {text}" for role, text in outcome.expected]
    return _jsonable(out)


def expected_text(expected: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """``gateway: duplicate seq or ds: ...``: where an attack must be rejected, in words."""
    return " or ".join(f"{role}: {text}" for role, text in expected) or "everything verifies"


@dataclass(frozen=True)
class SsdtfAttackRun(RunKind):
    """One attack (or positive control) of :data:`drivers.ssdtf.attacks.ATTACKS`."""

    name: ClassVar[str] = "ssdtf-attack"
    attack: str
    config: FlowConfig = field(default_factory=FlowConfig)

    def __post_init__(self) -> None:
        from drivers.ssdtf.attacks import ATTACKS

        if self.attack not in ATTACKS:
            raise SafeLabError(
                f"unknown attack {self.attack!r}", f"choose one of {', '.join(ATTACKS)}"
            )
        _check(self.config)

    def planned(self) -> int:
        return 1

    def execute(self, ctx: RunContext) -> SsdtfAttackResult:
        from drivers.ssdtf.attacks import ATTACKS, run_attack

        attack = ATTACKS[self.attack]
        cfg, token = _lend_token(ctx, self.config)
        peer = broker_identity(cfg.broker)
        ctx.describe(peer=peer, condition=f"attack {attack.name}, model {cfg.model}")
        ctx.post(step=f"attack {attack.name}")
        outcome = run_attack(attack.name, cfg)  # sensors log in here: a wrong PIN stores nothing
        trace = outcome.trace
        rows = RowCopier()(trace) if trace is not None else ()
        lanes = tuple(trace.lanes()) if trace is not None else ()
        # Stored once it ran (an attack is over in seconds): what it did and the verdict.
        run_id = _create_run(
            ctx,
            token,
            peer,
            experiment="ssdtf-attack",
            mode=f"attack:{attack.name}",
            n_planned=0,
            extra={
                "attack": attack.name,
                "title": attack.title,
                "control": attack.control,
                "expected": expected_text(attack.expect),
                "model": cfg.model,
                "broker": cfg.broker,
                "outcome": outcome_dict(outcome),
                "verdict": SsdtfAttackResult(outcome, 0).verdict,
                "packets": len(rows),
            },
        )
        ctx.store.finish_run(run_id, "complete")
        ctx.post(run_id=run_id, done=1, detail=AttackDetail(rows, lanes, trace, outcome))
        return SsdtfAttackResult(outcome, run_id)

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        return f"attack {self.attack}: {result.verdict} (run {result.run_id})"
