"""The run service: every measured run (signing, protocols, Table 6, SSDTF flows and attacks,
patterns, what-ifs) is started, controlled, observed and stored the same way.

Why: the CLI and each screen used to orchestrate runs themselves, and they drifted apart
(three PIN flows, disagreeing "which protocols resume" rules, peers named by guessing at class
names, tokens opened twice). Now front ends only build a spec, give a PIN provider and render
snapshots; everything with side effects happens here, in the driver layer.
``tests/test_layering.py`` keeps it so.

Using a run (front ends)
------------------------
::

    from drivers.runs import ProtocolRun, RunHandle

    spec = ProtocolRun("mqtt", "software:p256", Condition(resume=True), n=30)  # refused here
    handle = RunHandle(spec, db_path=db, pin_provider=ask, on_snapshot=draw)
    outcome = handle.run()          # CLI: in this thread, so Ctrl-C keeps the partial run
    outcome.raise_for_error()       # CLI: failed/cancelled/interrupted -> its one-line error
    handle.pause(); handle.resume(); handle.stop()   # any thread, even before the run starts

A :class:`PatternRun` can also be changed while it runs: ``spec.flip("preauth", "on")`` from
any thread (checked by the rules at once, applied at the next event, marked in the samples);
:class:`PatternCompareRun` runs two toggle combinations taking turns (A/B).
:class:`WhatIfRun` predicts a scenario with the model of :mod:`drivers.whatif` (stored as an
experiment ``whatif`` run) and, with ``validate``, measures the same scenario beside it;
:class:`WhatIfCalibrationRun` measures the model's loopback constants.

The console calls ``handle.run()`` inside a Textual thread worker (``run_worker(...,
thread=True)``), because its PIN modal waits on the worker; scripts may use
``handle.start()`` / ``handle.wait()`` (a plain daemon thread) or ``with running(handle):``.

- ``pin_provider(token) -> Pin | None`` is the front end's one PIN step (CLI:
  :func:`drivers.tokens.pin.run_pin_provider` -- env, fd or prompt; console: the masked
  modal). The service calls it at most once per token per run, only if the token needs a PIN,
  before anything is stored; it gets the token to show its label and tries left. A wrong PIN
  is never retried (the login error ends the run); ``None`` (cancelled) ends the run
  ``cancelled`` with nothing run.
- ``on_snapshot`` (and :meth:`RunHandle.subscribe`) get frozen :class:`RunSnapshot` objects
  from the run's thread: state, run id, done/planned, statistics, histogram, typed
  :class:`RunMeta` (token provenance, peer real/embedded and version, point of
  establishment, condition), multi-run step, and a kind's own frozen ``detail``. Textual
  screens wrap them in messages (``post_message``), the CLI updates a progress bar.
- :class:`RunOutcome`: final state (``complete``, ``incomplete`` -- stopped, interrupted or
  failed after something was stored, which is kept --, ``failed``, ``cancelled``), text, run
  ids, the kind's result and the error if any.

Adding a run kind (SSDTF flows and attacks, patterns, what-ifs)
---------------------------------------------------------------
1. A frozen dataclass subclassing :class:`RunKind` with a ``name`` ClassVar (stored as the
   outcome's kind). Validate the spec in ``__post_init__`` so invalid combinations are
   refused before a thread, a token or a peer exists (protocol conditions: ask
   :mod:`drivers.protocols.rules`; put new capability rules in such one module too).
2. ``execute(self, ctx: RunContext)`` does the run in the run's thread, using only:

   - ``ctx.token(uri)`` -- the token, opened once per run, closed at the end;
   - ``ctx.pin(token)`` -- THE PIN step (``None`` if not needed; raises on cancel);
   - ``ctx.peer(peer)`` / ``ctx.keep(cm)`` -- started/entered now, stopped at the run's end
     (or use a ``with`` block for a shorter life);
   - ``ctx.store`` -- the :class:`~drivers.bench.store.ResultsStore` of this thread: create
     the run row once the pre-flight passed, add samples as they come, finish it; call
     ``ctx.stored(run_id)`` (or post ``run_id=``) so the outcome lists it and the service
     marks it ``incomplete`` if an error leaves it open;
   - ``ctx.describe(token=TokenProvenance.of(token, uri), peer=peer.identity, ...)`` --
     metadata, never guessed (peers say :attr:`~drivers.peers.base.Peer.identity`);
   - ``ctx.post(done=..., stats=..., detail=YourFrozenDetail(...))`` -- a snapshot (throttle
     to a few per second);
   - ``ctx.checkpoint()`` between trials/steps -- waits while paused, True means stop: end
     with what was stored marked ``incomplete`` (return a result with ``status`` /
     ``reason``, or raise :class:`~drivers.errors.RunInterrupted`); ``ctx.follow(loop)`` when
     an existing loop has its own ``stop/pause/resume`` (as :class:`SigningRun` does).
3. Return the kind's result; an object with ``status``/``reason`` attributes sets the
   outcome's state (``complete`` or ``incomplete``). Override ``ended_text`` for the final
   one-line status and ``planned`` for the first progress bar.
4. Raise :class:`~drivers.errors.SafeLabError` (problem, fix) for what went wrong; anything
   else is reported as a bug, with the stored part kept.
5. Front ends: build the spec, give ``pin_provider``, render snapshots. Never start peers,
   open tokens for runs or write the store there (the layering test fails).
"""

from drivers.runs.meta import RunMeta, TokenProvenance
from drivers.runs.pattern import (
    CompareResult,
    PatternCompareRun,
    PatternDetail,
    PatternResult,
    PatternRun,
)
from drivers.runs.protocol import (
    ProtocolDetail,
    ProtocolRun,
    Table6Result,
    Table6Row,
    Table6Run,
    table6_steps,
)
from drivers.runs.service import (
    RunContext,
    RunHandle,
    RunKind,
    RunOutcome,
    RunPinProvider,
    RunSnapshot,
    RunState,
    running,
)
from drivers.runs.signing import SignDetail, SigningRun
from drivers.runs.ssdtf import (
    AttackDetail,
    FlowControls,
    FlowDetail,
    SsdtfAttackResult,
    SsdtfAttackRun,
    SsdtfFlowResult,
    SsdtfFlowRun,
)
from drivers.runs.whatif import (
    Measured,
    WhatIfCalibrationRun,
    WhatIfResult,
    WhatIfRun,
)

__all__ = [
    "AttackDetail",
    "CompareResult",
    "FlowControls",
    "FlowDetail",
    "Measured",
    "PatternCompareRun",
    "PatternDetail",
    "PatternResult",
    "PatternRun",
    "ProtocolDetail",
    "ProtocolRun",
    "RunContext",
    "RunHandle",
    "RunKind",
    "RunMeta",
    "RunOutcome",
    "RunPinProvider",
    "RunSnapshot",
    "RunState",
    "SignDetail",
    "SigningRun",
    "SsdtfAttackResult",
    "SsdtfAttackRun",
    "SsdtfFlowResult",
    "SsdtfFlowRun",
    "Table6Result",
    "Table6Row",
    "Table6Run",
    "TokenProvenance",
    "WhatIfCalibrationRun",
    "WhatIfResult",
    "WhatIfRun",
    "running",
    "table6_steps",
]
