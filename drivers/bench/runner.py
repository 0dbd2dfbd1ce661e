"""The signing experiment: warm-up, n timed trials, per-phase times, stored as it goes.

Modes (the paper's Table 2, plus the in-process baseline):

- ``local_sw``: sign init → sign, the key in this process (token ``software:p256``).
- ``openssl_cli``: one ``openssl dgst -sha256 -sign`` process per signature (``openssl-cli:``).
- ``sign_only``: sign init → sign; session and key handle reused (any token).
- ``total``: open → login → find → sign init → sign, everything fresh (any token).

Before anything is stored, a pre-flight opens the token, logs in, finds the key, signs once and
verifies the signature against the token's public key: a wrong PIN, a missing key or a token
that signs with the wrong key fails there, once, with nothing retried. The run row is then
created (so a store problem shows up before trials start) and trials follow; samples are
written in small batches. Ctrl-C, :meth:`ExperimentRunner.stop`, or an error ends the run as
``incomplete`` with everything measured so far kept.
"""

from __future__ import annotations

import contextlib
import gc
import platform
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata

from drivers.bench.stats import StatsSnapshot, StreamingStats
from drivers.bench.store import ResultsStore
from drivers.errors import PinCancelled, PinError, RunInterrupted, SafeLabError, TokenError
from drivers.tokens.base import HashOn, KeyInfo, Pin, PinProvider, Token, TokenSession

PAPER_DATA = b"12345678901234567890123456789012"
"""The paper's fixed 32-byte message."""


class Mode(Enum):
    LOCAL_SW = "local_sw"
    OPENSSL_CLI = "openssl_cli"
    SIGN_ONLY = "sign_only"
    TOTAL = "total"


MODE_TIMES = {
    Mode.LOCAL_SW: "sign init → sign, software key in-process",
    Mode.OPENSSL_CLI: "one `openssl dgst -sha256 -sign` process per signature",
    Mode.SIGN_ONLY: "sign init → sign, session and key handle reused",
    Mode.TOTAL: "open session → login → find key → sign init → sign, all fresh",
}

MODE_TOKEN_KIND = {Mode.LOCAL_SW: "software", Mode.OPENSSL_CLI: "openssl-cli"}
MODE_DEFAULT_TOKEN = {Mode.LOCAL_SW: "software:p256", Mode.OPENSSL_CLI: "openssl-cli:p256"}


@dataclass(frozen=True)
class RunConfig:
    mode: Mode = Mode.SIGN_ONLY
    n: int = 100
    warmup: int = 3
    data: bytes = PAPER_DATA
    threshold_ms: float = 1000.0
    hash_on: HashOn = HashOn.HOST
    key_selector: str | None = None

    def validate(self) -> None:
        if self.n < 1:
            raise SafeLabError(f"n must be at least 1 (got {self.n})", "give -n 1 or more")
        if self.warmup < 0:
            raise SafeLabError(f"warm-up must be 0 or more (got {self.warmup})", "fix --warmup")
        if self.threshold_ms <= 0:
            raise SafeLabError("the threshold must be positive", "give --threshold-ms > 0")


@dataclass(frozen=True)
class Trial:
    """One measured trial: its index, total duration and per-phase durations (ns)."""

    idx: int
    total_ns: int
    phase_ns: dict[str, int]


TrialTimes = tuple[int, dict[str, int]]
"""What one trial function returns: total ns and per-phase ns."""


@dataclass(frozen=True)
class Progress:
    """What a UI needs to redraw: immutable, posted from the runner's thread."""

    run_id: int
    done: int
    planned: int
    stats: StatsSnapshot
    last: Trial | None
    paused: bool = False


@dataclass
class RunResult:
    run_id: int
    status: str
    stats: StatsSnapshot
    reason: str | None = None
    notes: list[str] = field(default_factory=list)


def collect_versions() -> dict[str, str]:
    """Versions that explain a result: Python, OpenSSL, the libraries that sign."""
    versions = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "openssl": ssl.OPENSSL_VERSION,
    }
    for package in ("safelab", "cryptography", "python-pkcs11", "hdrhistogram"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def check_mode_token(mode: Mode, token: Token) -> None:
    """local_sw and openssl_cli are baselines of one token kind each; say so if mixed."""
    wanted = MODE_TOKEN_KIND.get(mode)
    if wanted and token.info.kind != wanted:
        raise TokenError(
            f"mode {mode.value} measures the {wanted} baseline, not a {token.info.kind} token",
            f"use --mode sign_only or total with this token, or --token {MODE_DEFAULT_TOKEN[mode]}",
        )


class ExperimentRunner:
    """Runs one signing experiment on one token. Thread-safe controls: stop, pause, resume."""

    def __init__(
        self,
        token: Token,
        config: RunConfig,
        store: ResultsStore,
        pin_provider: PinProvider | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval_s: float = 0.2,
        flush_interval_s: float = 0.25,
    ) -> None:
        config.validate()
        check_mode_token(config.mode, token)
        self.token = token
        self.config = config
        self.store = store
        self.pin_provider = pin_provider
        self.on_progress = on_progress
        self.progress_interval_s = progress_interval_s
        self.flush_interval_s = flush_interval_s
        self.stats = StreamingStats(config.threshold_ms, keep_samples=True)
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._pin: Pin | None = None
        self.run_id = 0
        self.notes: list[str] = []

    # -- controls (any thread) ------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Pre-flight, then the trials. Raises :class:`RunInterrupted` on Ctrl-C (run kept)."""
        self._pin = self._obtain_pin()
        key = self._preflight()
        self.run_id = self.store.create_run(
            experiment="sign",
            mode=self.config.mode.value,
            n_planned=self.config.n,
            warmup=self.config.warmup,
            data_len=len(self.config.data),
            hash_on=self.config.hash_on.value,
            threshold_ms=self.config.threshold_ms,
            token=self.token.info.as_dict(),
            versions=collect_versions(),
            extra={
                "times": MODE_TIMES[self.config.mode],
                "key": key.label,
                "curve": key.curve,
                "notes": self.notes,
            },
        )
        buffer: list[tuple[int, int, dict[str, int]]] = []
        status: str = "incomplete"
        reason: str | None = "stopped before the first trial"
        try:
            with self._trial_source(key) as trial:
                for _ in range(self.config.warmup):
                    if self._stop.is_set():
                        break
                    trial()
                status, reason = self._measure(trial, buffer)
        except KeyboardInterrupt:
            status, reason = "incomplete", "interrupted by the user (Ctrl-C)"
            self._save(buffer, status, reason)
            raise RunInterrupted(
                f"interrupted: kept {self.stats.count} of {self.config.n} trials as run "
                f"{self.run_id} (marked incomplete)",
                f"see it with `safelab runs show {self.run_id}`",
            ) from None
        except SafeLabError as exc:
            self._save(buffer, "incomplete", exc.one_line())
            exc.problem += f" (run {self.run_id} kept {self.stats.count} trials, incomplete)"
            raise
        except Exception as exc:
            self._save(buffer, "incomplete", f"unexpected error: {exc!r}")
            raise
        self._save(buffer, status, reason)
        return RunResult(self.run_id, status, self.stats.final_snapshot(), reason, self.notes)

    def _obtain_pin(self) -> Pin | None:
        if not self.token.needs_login:
            return None
        if self.pin_provider is not None:
            pin = self.pin_provider()
            if pin is None:
                raise PinCancelled(
                    f"PIN entry for {self.token.info.label!r} was cancelled; nothing was run",
                    "start again and give the PIN when asked",
                )
            return pin
        raise PinError(
            f"token {self.token.info.label!r} needs a user PIN and none was given",
            "give it with --pin-env VAR or --pin-fd N, or run in a terminal to be asked",
        )
        return pin

    def _preflight(self) -> KeyInfo:
        """Open, log in, find, sign once and verify: fail before anything is stored."""
        with self.token.device_lock, self.token.open() as session:
            session.login(self._pin)
            key = session.find_key(self.config.key_selector)
            session.sign_init(key, self.config.hash_on)
            signature = session.sign(self.config.data)
        try:
            public = self.token.public_key(self.config.key_selector)
        except SafeLabError as exc:
            self.notes.append(f"signature not verified: {exc.problem}")
            return key
        if not signature.verify(public, self.config.data, self.config.hash_on):
            raise TokenError(
                f"{self.token.info.label!r} returned a signature that does not verify against "
                "its own public key",
                "the key and its public key/certificate on the token do not match; check them",
            )
        return key

    def _trial_source(self, key: KeyInfo) -> _TrialSource:
        return _TrialSource(self, key)

    def _measure(
        self, trial: Callable[[], TrialTimes], buffer: list[tuple[int, int, dict[str, int]]]
    ) -> tuple[str, str | None]:
        last_flush = last_progress = time.monotonic()
        total_ns, phase_ns = 0, dict[str, int]()
        for idx in range(self.config.n):
            if not self._resume.is_set():
                self._post(Trial(idx - 1, total_ns, phase_ns) if idx else None, paused=True)
                self._resume.wait()
            if self._stop.is_set():
                return "incomplete", f"stopped by the user after {idx} trials"
            total_ns, phase_ns = trial()
            self.stats.add(total_ns, phase_ns)
            buffer.append((idx, total_ns, phase_ns))
            now = time.monotonic()
            if now - last_flush >= self.flush_interval_s:
                self.store.add_samples(self.run_id, buffer)
                buffer.clear()
                last_flush = now
            if now - last_progress >= self.progress_interval_s:
                self._post(Trial(idx, total_ns, phase_ns))
                last_progress = now
        self._post(Trial(self.config.n - 1, total_ns, phase_ns) if self.config.n else None)
        return "complete", None

    def _post(self, last: Trial | None, paused: bool = False) -> None:
        if self.on_progress is not None:
            self.on_progress(
                Progress(
                    self.run_id,
                    self.stats.count,
                    self.config.n,
                    self.stats.snapshot(),
                    last,
                    paused,
                )
            )

    def _save(
        self, buffer: list[tuple[int, int, dict[str, int]]], status: str, reason: str | None
    ) -> None:
        self.store.add_samples(self.run_id, buffer)
        buffer.clear()
        self.store.finish_run(self.run_id, status, reason)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector out of a timed trial, as ``timeit`` does.

    Collections still happen, just between trials: the next allocation after re-enabling
    triggers any collection that became due.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _TrialSource:
    """Makes the trial function of a mode; holds the long-lived session of sign_only modes."""

    def __init__(self, runner: ExperimentRunner, key: KeyInfo) -> None:
        self.runner = runner
        self.key = key
        self.session: TokenSession | None = None

    def __enter__(self) -> Callable[[], TrialTimes]:
        runner = self.runner
        if runner.config.mode is Mode.TOTAL:
            return self._total_trial
        session = runner.token.open()
        self.session = session
        session.login(runner._pin)
        self.key = session.find_key(runner.config.key_selector)
        return self._sign_only_trial

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            self.session.close()

    def _sign_only_trial(self) -> TrialTimes:
        session = self.session
        assert session is not None
        config = self.runner.config
        with _no_gc():
            start = time.perf_counter_ns()
            session.sign_init_and_sign(self.key, config.hash_on, config.data)
            total = time.perf_counter_ns() - start
        phase_ns = session.phase_ns
        return total, {"sign_init": phase_ns["sign_init"], "sign": phase_ns["sign"]}

    def _total_trial(self) -> TrialTimes:
        runner = self.runner
        config = runner.config
        token = runner.token
        with token.device_lock, _no_gc():
            start = time.perf_counter_ns()
            session = token.open()
            try:
                session.login(runner._pin)
                key = session.find_key(config.key_selector)
                session.sign_init(key, config.hash_on)
                session.sign(config.data)
                total = time.perf_counter_ns() - start
            finally:
                session.close()
        return total, dict(session.phase_ns)
