"""Table 3 on a second emulated paper SIM, in a process of its own, while Table 6 runs.

Why: the paper's own trial counts at its own timings take 292 s one after the other (Table 3:
100 × (11.5 + 476.5 + 677.7) ms; Table 6: 30 × the eight columns; JWT), so `safelab paper`
could not finish inside its 5-minute budget once warm-ups, the session-kept and resumed rows
and the JWT rows were added (measured 318–329 s). Table 3 and Table 6 are separate
experiments in the paper; on one physical SIM they must follow each other, and with any real
token they still do. The in-process emulated card (``iotsafe:emulated``) is a model: a
second instance of it (same profile, the same keys from its card file, timing draws of its
own) can answer Table 3 while the first serves Table 6's handshakes, and each card still does
one thing at a time, as the paper's did.

Why a process and not a thread: Table 3 times the card's modelled delays with
``perf_counter``; in a thread each trial would also wait for the GIL behind Table 6's Python
work (TLS clients, paho, the emulator of the first card), in a process of its own only for a
CPU, and it needs under 5 % of one (the whole command used 5 %). It is started with
``spawn`` (a fresh ``sys.executable``, nothing inherited) and writes its runs to the same
results store (SQLite serialises the two writers; a write waits at most the store's busy
timeout).

What crosses the pipe: run ids as they are created, progress counts, each mode's
:class:`~drivers.bench.runner.RunResult` (exact statistics over its stored samples), or the
child's error as text (problem, fix). Controls go the other way as two events (stop, resume),
so pause/resume/stop of the paper run reach Table 3's runners too. The emulated card's PIN is
its published lab PIN, taken in the child itself; no secret crosses.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.bench.runner import Mode, RunResult
from drivers.errors import RunInterrupted, SafeLabError

MODES = (Mode.OPENSSL_CLI, Mode.SIGN_ONLY, Mode.TOTAL)
"""Table 3's rows in the paper's order: the ``openssl`` process baseline, sign_only, total."""
PROGRESS_EVERY = 25
"""Trials between progress messages (the CLI prints each)."""


def can_run_beside(token_uri: str) -> bool:
    """True for the in-process emulated card, the only token a second instance exists of."""
    return token_uri.strip().lower().startswith("iotsafe:emulated")


@dataclass(frozen=True)
class Table3Spec:
    """What the child runs: the same trials `safelab paper` runs in sequence."""

    token_uri: str
    openssl_uri: str
    db_path: str
    n: int
    warmup: int = 1
    progress_interval_s: float = 0.25


def _child(conn: Any, spec: Table3Spec, stop: Any, resume: Any) -> None:
    """The child process: Table 3's three runs, reported over ``conn``. Never raises."""
    try:
        _run_table3(conn, spec, stop, resume)
    except RunInterrupted as exc:
        conn.send(("interrupted", exc.problem, exc.fix))
    except SafeLabError as exc:
        conn.send(("error", exc.problem, exc.fix))
    except BaseException as exc:  # the parent makes it a clear error
        conn.send(("error", f"Table 3's process failed: {exc!r}", "run again with --sequential"))
    finally:
        conn.close()


def _run_table3(conn: Any, spec: Table3Spec, stop: Any, resume: Any) -> None:
    from drivers.bench.store import ResultsStore
    from drivers.tokens.registry import open_token

    with contextlib.ExitStack() as stack:
        store = stack.enter_context(ResultsStore(Path(spec.db_path)))
        card = stack.enter_context(open_token(spec.token_uri))
        openssl = stack.enter_context(open_token(spec.openssl_uri))
        for mode in MODES:
            if stop.is_set():
                raise RunInterrupted(f"paper run stopped before Table 3 {mode.value}", "")
            token = openssl if mode is Mode.OPENSSL_CLI else card
            result = _run_mode(conn, spec, mode, token, store, stop, resume)
            if result.status != "complete":
                raise RunInterrupted(f"Table 3 {mode.value}: {result.reason}", "run it again")


def _run_mode(
    conn: Any, spec: Table3Spec, mode: Mode, token: Any, store: Any, stop: Any, resume: Any
) -> RunResult:
    """One Table 3 row, as `safelab paper` runs it in sequence: n trials after one warm-up."""
    from drivers.bench.runner import ExperimentRunner, RunConfig
    from drivers.cards.emulator.store import LAB_PIN
    from drivers.tokens.base import Pin

    conn.send(("step", mode.value, 0, spec.n))
    sent = {"run": 0, "done": 0}

    def on_progress(progress: Any) -> None:
        if progress.run_id != sent["run"]:
            sent["run"] = progress.run_id
            conn.send(("created", mode.value, progress.run_id))
        if progress.done - sent["done"] >= PROGRESS_EVERY:
            sent["done"] = progress.done
            conn.send(("progress", mode.value, progress.done, spec.n))

    runner = ExperimentRunner(
        token,
        RunConfig(mode=mode, n=spec.n, warmup=spec.warmup),
        store,
        pin_provider=lambda: Pin(LAB_PIN),
        on_progress=on_progress,
        progress_interval_s=spec.progress_interval_s,
    )
    with _forwarding(runner, stop, resume):
        result = runner.run()
    conn.send(("created", mode.value, result.run_id))
    conn.send(("result", mode.value, result))
    return result


@contextlib.contextmanager
def _forwarding(runner: Any, stop: Any, resume: Any) -> Any:
    """Poll the parent's stop/resume events and apply them to ``runner`` until it ends."""
    ended = threading.Event()

    def watch() -> None:
        while not ended.wait(0.05):
            if stop.is_set():
                runner.stop()
                return
            if resume.is_set() == runner.paused:
                (runner.resume if resume.is_set() else runner.pause)()

    watcher = threading.Thread(target=watch, name="table3-controls", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        ended.set()
        watcher.join()


@dataclass
class Table3Beside:
    """The parent's handle on Table 3's process: controls, progress, and the results.

    ``on_run`` is called with every run id the child creates (so the run service lists and
    closes them); ``on_progress`` with a short text at every step and progress message.
    Both are called from this handle's reader thread.
    """

    spec: Table3Spec
    on_run: Any = None
    on_progress: Any = None
    results: dict[str, RunResult] = field(default_factory=dict)
    failure: SafeLabError | None = None
    _process: Any = None
    _reader: threading.Thread | None = None

    def start(self) -> Table3Beside:
        context = multiprocessing.get_context("spawn")
        self._stop, self._resume = context.Event(), context.Event()
        self._resume.set()
        parent_end, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(child_end, self.spec, self._stop, self._resume),
            name="safelab-table3",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._reader = threading.Thread(
            target=self._read, args=(parent_end,), name="table3-reader", daemon=True
        )
        self._reader.start()
        return self

    # -- controls (the run service forwards the paper run's own) ---------------------------
    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    # -- the results ------------------------------------------------------------------------
    def _read(self, conn: Any) -> None:
        try:
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    break
                self._handle(message)
        finally:
            conn.close()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "created" and self.on_run is not None:
            self.on_run(message[2])
        elif kind in ("step", "progress") and self.on_progress is not None:
            _, mode, done, planned = message
            self.on_progress(f"Table 3 {mode}: {done}/{planned}")
        elif kind == "result":
            result: RunResult = message[2]
            self.results[message[1]] = result
            if self.on_progress is not None:
                self.on_progress(f"Table 3 {message[1]}: {result.stats.count}/{self.spec.n} done")
        elif kind == "interrupted":
            self.failure = RunInterrupted(message[1], message[2])
        elif kind == "error":
            self.failure = SafeLabError(message[1], message[2])

    def check(self) -> None:
        """Raise the child's error now, if it has one (called between Table 6's steps)."""
        if self.failure is not None:
            raise self.failure

    def wait(self) -> dict[str, RunResult]:
        """Every mode's result, once the child has ended; its error if it had one."""
        assert self._process is not None and self._reader is not None
        self._process.join()
        self._reader.join()
        self.check()
        missing = [mode.value for mode in MODES if mode.value not in self.results]
        if missing:
            raise SafeLabError(
                f"Table 3's process ended (exit code {self._process.exitcode}) without "
                f"{', '.join(missing)}",
                "run `safelab paper --sequential` to run Table 3 in this process",
            )
        return self.results

    def close(self) -> None:
        """Stop the child if it still runs (the paper run ended early) and reap it."""
        if self._process is None:
            return
        if self._process.is_alive():
            self.stop()
            self._process.join(10.0)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5.0)
        if self._reader is not None:
            self._reader.join(5.0)
