"""``card serve`` stops cleanly on SIGTERM and SIGINT, with or without a terminal, modem or not:
it exits 0 within a bounded time and the virtual reader shows the card removed."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from drivers.cards.atr import EMULATOR_ATR
from drivers.cards.pcsc import list_readers
from tests.cards.conftest import SAFELAB, SERVE_PORT, Served


def _ignore_sigint() -> None:
    """What a non-interactive shell does to ``cmd &``: the job inherits SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _spawn(args: list[str], ignore_sigint: bool) -> Served:
    process = subprocess.Popen(
        [*SAFELAB, "card", "serve", "--vpcd-port", str(SERVE_PORT), "--speed", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no controlling terminal, as under a service manager
        preexec_fn=_ignore_sigint if ignore_sigint else None,
        env={**os.environ, "COLUMNS": "200"},
    )
    served = Served(process)
    served.wait_ready()
    return served


@pytest.mark.parametrize(
    ("args", "signum", "ignore_sigint"),
    [
        (["--modem"], signal.SIGTERM, False),
        (["--modem"], signal.SIGINT, True),
        (["--no-pcsc", "--modem"], signal.SIGTERM, False),
        ([], signal.SIGHUP, False),
    ],
    ids=["pcsc+modem-SIGTERM", "pcsc+modem-SIGINT-inherited-ignored", "modem-SIGTERM", "SIGHUP"],
)
def test_serve_stops_cleanly_without_a_terminal(
    pcscd: str, args: list[str], signum: int, ignore_sigint: bool
) -> None:
    served = _spawn(args, ignore_sigint)
    pcsc = "--no-pcsc" not in args
    if pcsc:
        assert any(r.card_present and r.atr == EMULATOR_ATR for r in list_readers())
    out = served.stop(signum, timeout_s=20)
    assert served.process.returncode == 0, (served.process.returncode, out)
    assert "card removed after" in out
    if pcsc:  # stop() returned only once pcscd shows the reader empty
        assert not any(
            r.name == served.reader and r.card_present and r.atr == EMULATOR_ATR
            for r in list_readers()
        )
