"""Protocol runs and the paper's Table 6 on the run service.

:class:`ProtocolRun` is one protocol under one condition against its real peer (``safelab
proto mqtt``, a matrix cell); :class:`Table6Run` is every chosen protocol, software key versus
the token, full and (where :mod:`drivers.protocols.rules` allows) resumed. Both refuse a
condition the rules refuse before opening anything, ask the PIN once through the service,
take the peer's provenance from the peer itself, and store every run as it goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from drivers.bench.paper import TABLE6
from drivers.bench.stats import StreamingStats
from drivers.errors import RunInterrupted, SafeLabError
from drivers.peers.base import PeerIdentity
from drivers.protocols.base import PROTOCOL_PHASES, Condition, ProtocolResult, ProtocolTrial
from drivers.protocols.rules import check, no_resumption_note, paper_client, resumable
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
    link: str | None = None
    """An emulated network link (``--link`` text or a profile name; :mod:`drivers.links`)."""
    link_mode: str = "proxy"

    def __post_init__(self) -> None:
        check(self.protocol, self.condition)  # refused here: before a thread or a token
        if self.n < 1 or self.warmup < 0:
            raise SafeLabError("n must be at least 1 and warm-up at least 0", "fix -n/--warmup")
        if self.link:
            from drivers.links import parse_link

            parse_link(self.link)  # a bad spec is refused before anything starts

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
            link=self.link,
            link_mode=self.link_mode,
        )
        established = str(ctx.store.get_run(result.run_id).extra.get("established_at") or "")
        ctx.describe(established_at=established)
        live.post(result)
        return result

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        text = f"{self.protocol} {self.condition.name}: run {result.run_id} {result.status}"
        return text + (f" ({result.reason})" if result.reason else "")


@dataclass(frozen=True)
class JwtRow:
    """The paper's JWT figures beside ours: ES256 creation, software versus token, and one
    request with a cached JWT (section 4: 15 vs 650 ms; ~10 ms per request either way)."""

    software_sign_ms: float
    token_sign_ms: float
    cached_software_ms: float
    cached_token_ms: float
    run_ids: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, object]:
        from drivers.bench.paper import PAPER_JWT

        return {
            "software_sign_ms": self.software_sign_ms,
            "token_sign_ms": self.token_sign_ms,
            "cached_software_ms": self.cached_software_ms,
            "cached_token_ms": self.cached_token_ms,
            "paper_software_sign_ms": PAPER_JWT["software_sign_ms"],
            "paper_iot_safe_sign_ms": PAPER_JWT["iot_safe_sign_ms"],
            "paper_cached_request_ms": PAPER_JWT["cached_request_ms"],
            "run_ids": list(self.run_ids),
        }


TABLE6_CONDITIONS = {
    "paper": Condition(reuse_token_session=False),
    "session-kept": Condition(),
}
"""Table 6's conditions. ``paper``: a token session opened (and logged in) per handshake, as
the paper's clients did (OpenSSL's PKCS#11 engine, curl, the MQTT clients), so its
differences are the card's *total*; OpenVPN in PKCS#11 mode also reads its certificate from
the token at every start (:func:`drivers.protocols.rules.paper_client`). ``session-kept``: the
session stays open between handshakes (sign_only inside), SAFE Lab's remedy, not the paper's
figure."""


@dataclass(frozen=True)
class Table6Result:
    """What :class:`Table6Run` returns: the rows and who answered each protocol."""

    rows: tuple[Table6Row, ...]
    """One per protocol, in the order asked."""
    peers: dict[str, PeerIdentity]
    token: TokenProvenance
    status: str = "complete"
    condition: str = "paper"
    jwt: JwtRow | None = None


@dataclass(frozen=True)
class Table6Run(RunKind):
    """Table 6: per protocol, the software key and the token, full and resumed where allowed.

    Software and token take turns trial by trial (:mod:`drivers.protocols.interleave`), so
    drift between two blocks cannot bias the difference; each is still stored as its own run.
    ``condition`` is ``paper`` by default (see :data:`TABLE6_CONDITIONS`); resumed rows use
    the same token-session setting with TLS resumption. ``jwt`` adds the paper's JWT
    figures. A stop ends it between runs (the finished runs stay in the store) with a
    :class:`RunInterrupted` saying how far it got; a pause waits between trials.
    """

    name: ClassVar[str] = "table6"
    token_uri: str
    protocols: tuple[str, ...] = ("vpn", "mqtt", "coap", "https")
    n: int = 30
    warmup: int = 1
    software_uri: str = "software:p256"
    progress_interval_s: float = 0.15
    condition: str = "paper"
    jwt: bool = True

    def __post_init__(self) -> None:
        unknown = [p for p in self.protocols if p not in TABLE6]
        if unknown or not self.protocols:
            raise SafeLabError(
                f"unknown protocol {unknown[0]!r} for Table 6" if unknown else "no protocol given",
                "list some of vpn,mqtt,coap,https",
            )
        if self.condition not in TABLE6_CONDITIONS:
            raise SafeLabError(
                f"unknown Table 6 condition {self.condition!r}",
                f"use one of {', '.join(TABLE6_CONDITIONS)}",
            )

    def steps(self) -> int:
        """How many interleaved steps it makes: full (and resumed) per protocol, JWT's two."""
        return table6_steps(self.protocols, jwt=self.jwt)

    def planned(self) -> int:
        return self.n

    def execute(self, ctx: RunContext) -> Table6Result:
        from drivers.peers.pki import LabPki
        from drivers.protocols.experiment import peer_for

        token = ctx.token(self.token_uri)
        provenance = TokenProvenance.of(token, self.token_uri)
        base = TABLE6_CONDITIONS[self.condition]
        ctx.describe(token=provenance, condition=f"{self.condition}+resumed")
        pin = ctx.pin(token)
        software = ctx.token(self.software_uri)
        pki = LabPki()
        steps = _StepCounter(ctx, self.steps())
        rows, peers = [], {}
        for protocol in self.protocols:
            results: dict[tuple[str, bool], ProtocolResult] = {}
            with peer_for(protocol, pki) as peer:  # one peer for the protocol's runs
                peers[protocol] = peer.identity
                ctx.describe(peer=peer.identity)
                for resume in (False, True) if resumable(protocol) else (False,):
                    condition = replace(base, resume=resume)
                    if self.condition == "paper":
                        condition = paper_client(protocol, condition)
                    label = f"{protocol} {'resumed' if resume else 'full'}"
                    sw, tok = self._pair(
                        steps, protocol, condition, label, software, token, pin, peer, pki
                    )
                    results[("software", resume)], results[("token", resume)] = sw, tok
            rows.append(table6_row(protocol, results))
        jwt = self._jwt(steps, software, token, pin, pki, base, peers) if self.jwt else None
        return Table6Result(tuple(rows), peers, provenance, condition=self.condition, jwt=jwt)

    def _pair(
        self,
        steps: _StepCounter,
        protocol: str,
        condition: Condition,
        label: str,
        software: Any,
        token: Any,
        pin: Any,
        peer: Any,
        pki: Any,
    ) -> tuple[ProtocolResult, ProtocolResult]:
        """Software and token interleaved under ``condition``; the token's run is shown live."""
        from drivers.protocols.interleave import run_pair

        ctx = steps.ctx
        steps.next(label)
        lives = [_Live(ctx, self.n, self.progress_interval_s) for _ in range(2)]
        created: list[int] = []

        def on_created(run_id: int) -> None:
            ctx.stored(run_id)
            created.append(run_id)
            lives[len(created) - 1].run_id = run_id
            if len(created) == 2:
                lives[1].post()

        def on_trial(index: int, idx: int, trial: ProtocolTrial) -> None:
            live = lives[index]
            if index == 1:
                live.trial(idx, trial)
            else:
                live.stats.add(trial.total_ns, trial.phases)

        results = run_pair(
            protocol,
            condition,
            software,
            token,
            ctx.store,
            pin=pin,
            peer=peer,
            pki=pki,
            n=self.n,
            warmup=self.warmup,
            stop=_pause_only(ctx),
            on_trial=on_trial,
            on_created=on_created,
        )
        lives[1].post(results[1])
        return results[0], results[1]

    def _jwt(
        self,
        steps: _StepCounter,
        software: Any,
        token: Any,
        pin: Any,
        pki: Any,
        base: Condition,
        peers: dict[str, PeerIdentity],
    ) -> JwtRow:
        from drivers.protocols.experiment import peer_for

        with peer_for("jwt", pki) as peer:
            peers["jwt"] = peer.identity
            fresh = replace(base, jwt_ttl_s=0.0)
            sw, tok = self._pair(
                steps, "jwt", fresh, "jwt created per request", software, token, pin, peer, pki
            )
            cached = replace(base, jwt_ttl_s=3600.0)
            csw, ctok = self._pair(
                steps, "jwt", cached, "jwt cached", software, token, pin, peer, pki
            )
        return JwtRow(
            _phase(sw, "sign"),
            _phase(tok, "sign"),
            csw.stats.mean_ms,
            ctok.stats.mean_ms,
            (sw.run_id, tok.run_id, csw.run_id, ctok.run_id),
        )

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        runs = f"runs {run_ids[0]}–{run_ids[-1]}" if run_ids else "no runs"
        return f"Table 6 complete ({self.condition} condition, {runs} in the store)"


@dataclass
class _StepCounter:
    """Which interleaved step Table 6 is at; a stop between steps ends it."""

    ctx: RunContext
    steps: int
    step: int = 0

    def next(self, text: str) -> None:
        if self.ctx.checkpoint():
            raise RunInterrupted(
                f"Table 6 stopped by the user after {self.step} of {self.steps} steps",
                "the finished runs are in the store (safelab runs list)",
            )
        self.step += 1
        self.ctx.post(step=text, step_index=self.step, steps=self.steps, done=0)


def _phase(result: ProtocolResult, name: str) -> float:
    summary = result.stats.phases.get(name)
    return summary.mean_ms if summary else float("nan")


@dataclass
class Table6Row:
    protocol: str
    software_ms: float
    token_ms: float
    token_sign_ms: float
    """Mean time of the token's signatures inside one full handshake (what the paper says
    the difference is made of)."""
    resumed_software_ms: float | None = None
    resumed_token_ms: float | None = None
    resumed_token_signatures: int | None = None
    run_ids: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def difference_ms(self) -> float:
        return self.token_ms - self.software_ms

    def as_dict(self) -> dict[str, object]:
        paper = TABLE6.get(self.protocol)
        return {
            "protocol": self.protocol,
            "software_ms": self.software_ms,
            "token_ms": self.token_ms,
            "difference_ms": self.difference_ms,
            "token_sign_ms": self.token_sign_ms,
            "resumed_software_ms": self.resumed_software_ms,
            "resumed_token_ms": self.resumed_token_ms,
            "resumed_token_signatures": self.resumed_token_signatures,
            "paper_software_ms": paper.software_ms if paper else None,
            "paper_iot_safe_ms": paper.iot_safe_ms if paper else None,
            "paper_difference_ms": paper.difference_ms if paper else None,
            "paper_note": paper.inconsistency if paper else "",
            "run_ids": self.run_ids,
            "note": self.note,
        }


def table6_row(protocol: str, results: dict[tuple[str, bool], ProtocolResult]) -> Table6Row:
    """One row from the runs ``(who, resumed) -> result`` (who: ``software`` or ``token``).

    Means are compared, as the paper's Table 6 gives means.
    """
    full_token = results[("token", False)]
    row = Table6Row(
        protocol,
        results[("software", False)].stats.mean_ms,
        full_token.stats.mean_ms,
        _mean_phase(full_token, "sign"),
        run_ids=[r.run_id for r in results.values()],
    )
    if ("token", True) in results:
        row.resumed_software_ms = results[("software", True)].stats.mean_ms
        row.resumed_token_ms = results[("token", True)].stats.mean_ms
        row.resumed_token_signatures = sum(results[("token", True)].n_sign)
    else:
        row.note = no_resumption_note(protocol)
    return row


def _mean_phase(result: ProtocolResult, phase: str) -> float:
    summary = result.stats.phases.get(phase)
    return summary.mean_ms if summary else 0.0


def _pause_only(ctx: RunContext) -> Any:
    """Inside one Table 6 run a pause waits; a stop waits for the run's end (between runs)."""

    def check() -> bool:
        ctx.checkpoint()
        return False

    return check


def table6_steps(protocols: tuple[str, ...] | list[str], *, jwt: bool = True) -> int:
    """How many interleaved steps (software and token together) Table 6 makes for
    ``protocols``: full and resumed where resumable, full only elsewhere; JWT adds two."""
    return sum(2 if resumable(p) else 1 for p in protocols) + (2 if jwt else 0)
