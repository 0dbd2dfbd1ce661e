"""The run service: one handle, one PIN step, one way to post snapshots and keep results.

See :mod:`drivers.runs` for the guide. This module holds the machinery every run kind shares:
:class:`RunHandle` (start, pause, resume, stop, wait, outcome), :class:`RunContext` (what a
kind's :meth:`RunKind.execute` uses: tokens, the PIN, peers, the store, snapshots, controls)
and the frozen :class:`RunSnapshot` / :class:`RunOutcome` that front ends receive.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, TypeVar

from drivers.bench.stats import Histogram, StatsSnapshot
from drivers.bench.store import ResultsStore
from drivers.errors import PinCancelled, PinError, RunInterrupted, SafeLabError
from drivers.peers.base import Peer
from drivers.runs.meta import RunMeta
from drivers.tokens.base import Pin, Token
from drivers.tokens.registry import open_token

T = TypeVar("T")


class RunState(Enum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    """Stopped, interrupted or failed after something was stored: what ran is kept."""
    FAILED = "failed"
    CANCELLED = "cancelled"
    """The PIN entry was cancelled: nothing ran, nothing was stored."""

    @property
    def finished(self) -> bool:
        return self not in (RunState.PENDING, RunState.RUNNING, RunState.PAUSED)


@dataclass(frozen=True)
class RunSnapshot:
    """Everything a front end redraws, frozen: posted from the run's thread to subscribers.

    Generic fields cover every kind (progress, statistics, histogram, provenance); ``detail``
    carries a kind's own frozen extra (its type is documented by the kind).
    """

    kind: str
    state: RunState = RunState.PENDING
    run_id: int = 0
    """The store's id of the run being measured (0 before it exists)."""
    done: int = 0
    planned: int = 0
    stats: StatsSnapshot | None = None
    histogram: Histogram | None = None
    meta: RunMeta | None = None
    step: str = ""
    """What a multi-run kind is doing now (``mqtt resumed token``)."""
    step_index: int = 0
    steps: int = 0
    detail: object = None
    text: str = ""
    """A one-line status, set on the final snapshot (``run 12 complete``)."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended. ``error`` is set for failed, cancelled and interrupted runs."""

    kind: str
    state: RunState
    text: str
    run_ids: tuple[int, ...] = ()
    result: Any = None
    """What the kind's ``execute`` returned (``RunResult``, ``ProtocolResult``, rows...)."""
    error: SafeLabError | None = None
    meta: RunMeta | None = None
    last: RunSnapshot | None = None

    @property
    def run_id(self) -> int:
        return self.run_ids[-1] if self.run_ids else 0

    def raise_for_error(self) -> None:
        """For the CLI: turn a failed/cancelled/interrupted outcome into its one-line error."""
        if self.error is not None:
            raise self.error


RunPinProvider = Callable[[Token], Pin | None]
"""The front end's PIN step: called at most once per token per run, from the run's thread.

It gets the token so it can name it and show its tries left (:meth:`Token.pin_status`).
Return the PIN, ``None`` when the user cancelled, or raise :class:`PinError` when there is
no way to ask (a CLI without a terminal).
"""

SnapshotListener = Callable[[RunSnapshot], None]


class Controllable(Protocol):
    """A driver loop with its own controls (:class:`~drivers.bench.runner.ExperimentRunner`)."""

    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


class RunKind(ABC):
    """One kind of run: a frozen spec plus :meth:`execute`, which the service drives."""

    name: ClassVar[str] = "run"

    @abstractmethod
    def execute(self, ctx: RunContext) -> Any:
        """Do the run in the run's thread; return the kind's result (see :class:`RunOutcome`).

        Raise :class:`SafeLabError` for anything that went wrong; what was stored is kept.
        """

    def planned(self) -> int:
        """Trials (or runs) planned, for the first snapshot's progress bar."""
        return 0

    def ended_text(self, result: Any, run_ids: tuple[int, ...]) -> str:
        """The final one-line status of a run that ran to its end (or was stopped)."""
        status = getattr(result, "status", "complete")
        reason = getattr(result, "reason", None)
        text = f"{self.name}: run {run_ids[-1] if run_ids else '-'} {status}"
        return text + (f" ({reason})" if reason else "")


class RunContext:
    """What :meth:`RunKind.execute` may use; everything it opens is released by the service."""

    def __init__(
        self,
        handle: RunHandle,
        store: ResultsStore,
        resources: contextlib.ExitStack,
        parent: RunContext | None = None,
    ):
        self._handle = handle
        self._parent = parent
        self.store = store
        """The results store, opened in the run's thread (sqlite connections are per thread)."""
        self._resources = resources
        self._tokens: dict[str, Token] = {}
        self._pins: dict[int, Pin | None] = {}

    # -- resources ----------------------------------------------------------------------
    def token(self, uri: str) -> Token:
        """The token named by ``uri``, opened once per run and closed when the run ends."""
        if self._parent is not None:
            return self._parent.token(uri)
        if uri not in self._tokens:
            self._tokens[uri] = self._resources.enter_context(open_token(uri))
        return self._tokens[uri]

    def pin(self, token: Token) -> Pin | None:
        """THE PIN step: ``None`` if ``token`` needs none, else asked once and never retried.

        A cancelled entry raises :class:`PinCancelled` before anything is stored, so the run
        ends ``cancelled`` with nothing run. Asking again for the same token returns the
        first answer (Table 6 logs in many times with one PIN).
        """
        if not token.needs_login:
            return None
        key = id(token)
        if key in self._pins:
            pin = self._pins[key]
        else:
            provider = self._handle.pin_provider
            if provider is None:
                raise PinError(
                    f"token {token.info.label!r} needs a user PIN and none was given",
                    "give it with --pin-env VAR or --pin-fd N, or run in a terminal to be asked",
                )
            self._handle._pins_asked += 1
            pin = self._pins[key] = provider(token)
        if pin is None:
            raise PinCancelled(
                f"PIN entry for {token.info.label!r} was cancelled; nothing was run",
                "start again and give the PIN when asked",
            )
        return pin

    def peer(self, peer: Peer) -> Peer:
        """Start ``peer`` (if not running) and stop it when the run ends, whatever happens."""
        if not peer.running:
            self._resources.enter_context(peer)
        return peer

    def keep(self, resource: AbstractContextManager[T]) -> T:
        """Enter any context manager for the rest of the run."""
        return self._resources.enter_context(resource)

    @contextlib.contextmanager
    def scoped(self) -> Iterator[RunContext]:
        """A child context whose peers and kept resources end with the ``with`` block, while
        tokens, PINs, the store and the controls stay the run's (a run made of sub-runs, such
        as Table 7's pattern cells, so one cell's peers do not outlive it)."""
        with contextlib.ExitStack() as stack:
            child = RunContext(self._handle, self.store, stack, parent=self)
            child._pins = self._pins
            yield child

    # -- controls -----------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return self._handle.stopped

    def checkpoint(self) -> bool:
        """Between trials: wait while paused (posting a paused snapshot); True means stop."""
        handle = self._handle
        if handle.paused and not handle.stopped:
            self.post(state=RunState.PAUSED)
            handle._resume.wait()
            if not handle.stopped:
                self.post(state=RunState.RUNNING)
        return handle.stopped

    def follow(self, loop: Controllable) -> None:
        """Forward pause/resume/stop to a loop with its own controls, from now until the end."""
        self._handle._follow(loop)

    # -- provenance and snapshots -------------------------------------------------------
    def describe(self, **changes: object) -> RunMeta:
        """Set metadata fields (``token=``, ``peer=``, ``condition=``...) and post them."""
        meta = self._handle.meta.with_(**changes)
        self._handle.meta = meta
        self.post(meta=meta)
        return meta

    def stored(self, run_id: int) -> None:
        """Tell the service a store run exists: listed in the outcome, closed if left open."""
        if run_id and run_id not in self._handle._run_ids:
            self._handle._run_ids.append(run_id)

    def post(self, **changes: Any) -> RunSnapshot:
        """Post a new snapshot: the last one with ``changes`` (fields of :class:`RunSnapshot`)."""
        return self._handle._post(**changes)


@dataclass
class _Controls:
    loops: list[Controllable] = field(default_factory=list)


class RunHandle:
    """One run of one :class:`RunKind`. Controls are thread-safe and may come before start.

    ``start()`` runs it in a daemon thread (the console); ``run()`` runs it in the calling
    thread (the CLI, so Ctrl-C lands in the run and the partial run is kept).
    """

    def __init__(
        self,
        kind: RunKind,
        *,
        db_path: Path | str | None = None,
        pin_provider: RunPinProvider | None = None,
        on_snapshot: SnapshotListener | None = None,
    ) -> None:
        self.kind = kind
        self.db_path = db_path
        self.pin_provider = pin_provider
        self.meta = RunMeta(kind.name)
        self._listeners: list[SnapshotListener] = [on_snapshot] if on_snapshot else []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._controls = _Controls()
        self._run_ids: list[int] = []
        self._pins_asked = 0
        self._snapshot = RunSnapshot(kind.name, planned=kind.planned(), meta=self.meta)
        self._outcome: RunOutcome | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- listeners and state ------------------------------------------------------------
    def subscribe(self, listener: SnapshotListener) -> None:
        """Call ``listener`` with every snapshot, from the run's thread."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def snapshot(self) -> RunSnapshot:
        return self._snapshot

    @property
    def outcome(self) -> RunOutcome | None:
        """How the run ended; ``None`` while it runs."""
        return self._outcome

    @property
    def pins_asked(self) -> int:
        """How many times the PIN provider was called (at most once per token)."""
        return self._pins_asked

    # -- controls (any thread) ------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            self._resume.set()
            for loop in self._controls.loops:
                loop.stop()

    def pause(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._resume.clear()
            for loop in self._controls.loops:
                loop.pause()

    def resume(self) -> None:
        with self._lock:
            self._resume.set()
            for loop in self._controls.loops:
                loop.resume()

    def _follow(self, loop: Controllable) -> None:
        with self._lock:
            self._controls.loops.append(loop)
            if self._stop.is_set():
                loop.stop()
            elif not self._resume.is_set():
                loop.pause()

    # -- running ----------------------------------------------------------------------------
    def start(self) -> Self:
        """Run in a daemon thread; :meth:`wait` for the outcome."""
        self._thread = threading.Thread(target=self.run, name=f"run:{self.kind.name}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> RunOutcome | None:
        """The outcome once the run ended; ``None`` if ``timeout`` passed first."""
        self._done.wait(timeout)
        return self._outcome

    def run(self) -> RunOutcome:
        """Run in this thread; never raises a :class:`SafeLabError` (it is in the outcome).

        Ctrl-C (``KeyboardInterrupt``) is turned into an ``incomplete`` outcome whose error
        is a :class:`RunInterrupted` naming the kept run.
        """
        result: Any = None
        error: SafeLabError | None = None
        state = RunState.COMPLETE
        try:
            with contextlib.ExitStack() as resources:
                store = resources.enter_context(ResultsStore(self.db_path))
                ctx = RunContext(self, store, resources)
                self._post(state=RunState.RUNNING)
                try:
                    result = self.kind.execute(ctx)
                finally:
                    self._close_open_runs(store, result is None)
            status = getattr(result, "status", "complete")
            state = RunState.COMPLETE if status == "complete" else RunState.INCOMPLETE
            text = self.kind.ended_text(result, tuple(self._run_ids))
        except PinCancelled as exc:
            state, error, text = RunState.CANCELLED, exc, "PIN entry cancelled; no run"
        except RunInterrupted as exc:
            state, error, text = RunState.INCOMPLETE, exc, exc.one_line()
        except KeyboardInterrupt:
            kept = f"kept as run {self._run_ids[-1]} (incomplete)" if self._run_ids else "no run"
            error = RunInterrupted(f"interrupted: {kept}", "see it with `safelab runs list`")
            state, text = RunState.INCOMPLETE, error.one_line()
        except SafeLabError as exc:
            error, text = exc, exc.one_line()
            state = RunState.INCOMPLETE if self._run_ids else RunState.FAILED
        except Exception as exc:  # a bug: keep the run, report it, never take the UI down
            error = SafeLabError(
                f"unexpected error (a SAFE Lab bug, please report it): {type(exc).__name__}: {exc}",
                "what was measured is kept in the store",
            )
            error.__cause__ = exc
            text = error.one_line()
            state = RunState.INCOMPLETE if self._run_ids else RunState.FAILED
        last = self._post(state=state, text=text)
        self._outcome = RunOutcome(
            self.kind.name, state, text, tuple(self._run_ids), result, error, self.meta, last
        )
        self._done.set()
        return self._outcome

    def _close_open_runs(self, store: ResultsStore, failed: bool) -> None:
        """A run the kind left ``running`` (an error between its trials) is kept incomplete."""
        with contextlib.suppress(SafeLabError):
            for run_id in self._run_ids:
                if store.get_run(run_id).status == "running":
                    reason = "the run ended with an error" if failed else "the run was left open"
                    store.finish_run(run_id, "incomplete", reason)

    def _post(self, **changes: Any) -> RunSnapshot:
        if "run_id" in changes:
            run_id = changes["run_id"]
            if run_id and run_id not in self._run_ids:
                self._run_ids.append(run_id)
        with self._lock:
            snapshot = self._snapshot = replace(self._snapshot, **changes)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(snapshot)
        return snapshot


@contextlib.contextmanager
def running(handle: RunHandle) -> Iterator[RunHandle]:
    """``with running(handle):`` starts it in a thread and stops and waits for it on exit."""
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
        handle.wait()
