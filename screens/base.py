"""What every SAFE Lab screen shares: the lab state, a status line, and worker error handling.

Workers run driver calls in threads and report back with messages; a failure becomes one line
in the status bar (and a notification) instead of a traceback, as the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from drivers.errors import SafeLabError
from screens.lab import Lab
from screens.widgets.jobbar import JobBar


@dataclass
class WorkerFailed(Message):
    """A worker's driver call failed; ``text`` is what the user reads (SafeLabError.one_line)."""

    text: str
    source: str = ""


class StatusLine(Static):
    """One line at the bottom of a screen: what just happened, or what went wrong."""

    DEFAULT_CSS = """
    StatusLine { height: 1; width: 1fr; padding: 0 1; background: $boost; }
    StatusLine.-error { color: $error; text-style: bold; }
    """

    def show(self, text: str, error: bool = False) -> None:
        self.set_class(error, "-error")
        self.update(Text(("error: " if error else "") + text, no_wrap=True, overflow="ellipsis"))


def failure_text(exc: BaseException) -> str:
    """The one line a user sees for an exception raised by the driver layer."""
    if isinstance(exc, SafeLabError):
        return exc.one_line()
    return f"unexpected error (a SAFE Lab bug, please report it): {type(exc).__name__}: {exc}"


class LabScreen(Screen[None]):
    """A job's screen: knows the :class:`Lab`, owns a status line, turns worker errors into UI."""

    JOB = ""
    """The job (mode) name this screen belongs to, marked in the job bar."""

    def __init__(self, lab: Lab) -> None:
        super().__init__()
        self.lab = lab

    def job_bar(self) -> JobBar:
        return JobBar(self.lab.jobs, self.JOB)

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    def say(self, text: str) -> None:
        self.status.show(text)

    def fail(self, text: str) -> None:
        self.status.show(text, error=True)
        self.notify(text, severity="error", markup=False, timeout=8)

    def guarded(self, body: Callable[[], object], source: str = "") -> None:
        """Run a worker body; any exception becomes a :class:`WorkerFailed` message.

        The body's result is dropped (``post_message`` returns a bool, for one).
        """
        try:
            body()
        except Exception as exc:  # every failure must reach the user, never the terminal
            self.post_message(WorkerFailed(failure_text(exc), source))

    @on(WorkerFailed)
    def _worker_failed(self, message: WorkerFailed) -> None:
        self.fail(message.text)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that died without going through :meth:`guarded` still becomes a message."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.fail(failure_text(event.worker.error))
