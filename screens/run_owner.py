"""Every way out of the console stops the runs its screens own.

Why: a screen's run lives in a worker *thread*, which Textual cannot cancel, and Python waits
for that thread before the process ends. The quit key stops runs (``SafeLabApp._stop_and_exit``),
but an app that closes another way (an error, a test's failure, a closed terminal) only
unmounts its screens; a live SSDTF flow held at a packet would then keep the process alive for
its one-hour stepping deadline. Unmounting is the one event every way out goes through.
"""

from __future__ import annotations


class StopsRunOnUnmount:
    """Mixin for a job screen that owns a run: ``stop_for_exit`` when it is unmounted."""

    def stop_for_exit(self) -> None:
        raise NotImplementedError

    def on_unmount(self) -> None:
        self.stop_for_exit()  # idempotent in every screen: a stopped run ignores a second stop
