"""The loopback constants of the model, measured with the real peers and kept as data.

Why measured: what the client and the peer compute between flights (OpenSSL, mosquitto,
nginx, libcoap, OpenVPN and its timers) depends on this machine and these versions; no
flight diagram knows it. So ``safelab whatif calibrate`` (:class:`~drivers.runs.whatif.
WhatIfCalibrationRun`) runs each protocol with the software key and keeps, per protocol:

- ``direct``: the no-signature cost (trial total minus the signature) straight on loopback;
- ``proxy``: the same through the link proxy at ``rtt=0ms`` (the proxy's own crossings and
  its TCP behaviour, e.g. no delayed-ACK stall), the base of every prediction with a link;
- ``probe``: the same at ``rtt=PROBE`` and at ``rtt=PROBE2``; the slope between the two is
  the measured number of round trips (between two delays, so a loopback-only stall at 0 ms
  does not bend it), checked against the flight model and used for OpenVPN (whose timers
  overlap turns);
- ``bytes_up`` / ``bytes_down`` per trial as the link counted them (the flights' sizes), and
  ``writes_up`` / ``writes_down``: the writes (TCP chunks, datagrams) per trial, because the
  link delivers in order and each write draws its own jitter, so a flight of k writes arrives
  with the latest of k draws;
- ``software_sign``: the software key's signing time; ``card_host_ms``: the host's cost of a
  signature through the emulated card at ``speed=0`` (APDU building and parsing).

Each distribution is stored as quantiles (:class:`Quantiles`) and sampled by inverse CDF, so
predictions keep the measured shape (mosquitto's 40 ms delayed-ACK stall is in ``direct``).
Provenance (when, host, peer versions, run ids, n) travels with every figure. The packaged file
``profiles/whatif/calibration.json`` was measured on the lab machine; a user's own calibration
(``<data dir>/whatif/calibration.json``) takes precedence.
"""

from __future__ import annotations

import bisect
import json
import random
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import SafeLabError

QUANTILE_POINTS: tuple[float, ...] = (
    0,
    1,
    2,
    5,
    10,
    20,
    30,
    40,
    50,
    60,
    70,
    80,
    90,
    95,
    98,
    99,
    100,
)
PROBE_RTT_MS = 100.0
PROBE2_RTT_MS = 200.0
"""The calibration probes' RTTs: not the benchmark's (0, 50, 150 ms), so the accuracy table
is not fitted to itself."""
CALIBRATED_PROTOCOLS = ("mqtt", "https", "coap", "vpn")
PACKAGED = Path(__file__).resolve().parents[2] / "profiles" / "whatif" / "calibration.json"


class CalibrationError(SafeLabError):
    """No calibration, or one that lacks what a prediction needs."""


@dataclass(frozen=True)
class Quantiles:
    """A measured distribution as quantile points (ms); sampled by inverse CDF."""

    values: tuple[float, ...]
    n: int = 0

    @classmethod
    def of(cls, samples: Sequence[float]) -> Quantiles:
        data = sorted(samples)
        if not data:
            raise CalibrationError("no samples to calibrate from", "run more trials")
        return cls(tuple(_percentile(data, p) for p in QUANTILE_POINTS), len(data))

    def sample(self, rng: random.Random) -> float:
        u = rng.random() * 100.0
        i = min(bisect.bisect_right(QUANTILE_POINTS, u), len(QUANTILE_POINTS) - 1)
        lo_p, hi_p = QUANTILE_POINTS[i - 1], QUANTILE_POINTS[i]
        lo, hi = self.values[i - 1], self.values[i]
        return lo + (hi - lo) * (u - lo_p) / (hi_p - lo_p)

    @property
    def median(self) -> float:
        return self.values[QUANTILE_POINTS.index(50)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "points": list(QUANTILE_POINTS),
            "ms": [round(v, 4) for v in self.values],
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Quantiles:
        if list(data.get("points", [])) != list(QUANTILE_POINTS):
            raise CalibrationError(
                "calibration quantile points differ from this version's",
                "re-run `safelab whatif calibrate`",
            )
        return cls(tuple(float(v) for v in data["ms"]), int(data.get("n", 0)))


def _percentile(data: list[float], p: float) -> float:
    if len(data) == 1:
        return data[0]
    k = (len(data) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


@dataclass(frozen=True)
class ProtocolCalibration:
    """One protocol's measured loopback constants (see the module docstring)."""

    protocol: str
    direct: Quantiles
    proxy: Quantiles
    software_sign: Quantiles
    probe_median_ms: float
    bytes_up: float
    bytes_down: float
    ready_ms: float
    """Median of the phase after the handshake through the proxy (the first request's local
    cost): what a kept connection's request costs besides its round trip."""
    run_ids: tuple[int, ...] = ()
    writes_up: float = 0.0
    writes_down: float = 0.0
    probe2_median_ms: float = 0.0

    @property
    def measured_round_trips(self) -> float:
        if self.probe2_median_ms:
            return (self.probe2_median_ms - self.probe_median_ms) / (PROBE2_RTT_MS - PROBE_RTT_MS)
        return (self.probe_median_ms - self.proxy.median) / PROBE_RTT_MS

    def as_dict(self) -> dict[str, Any]:
        return {
            "direct": self.direct.as_dict(),
            "proxy": self.proxy.as_dict(),
            "software_sign": self.software_sign.as_dict(),
            "probe_rtt_ms": PROBE_RTT_MS,
            "probe_median_ms": round(self.probe_median_ms, 3),
            "probe2_rtt_ms": PROBE2_RTT_MS,
            "probe2_median_ms": round(self.probe2_median_ms, 3),
            "measured_round_trips": round(self.measured_round_trips, 3),
            "bytes_up": round(self.bytes_up, 1),
            "bytes_down": round(self.bytes_down, 1),
            "ready_ms": round(self.ready_ms, 3),
            "run_ids": list(self.run_ids),
            "writes_up": round(self.writes_up, 2),
            "writes_down": round(self.writes_down, 2),
        }

    @classmethod
    def from_dict(cls, protocol: str, data: dict[str, Any]) -> ProtocolCalibration:
        return cls(
            protocol,
            Quantiles.from_dict(data["direct"]),
            Quantiles.from_dict(data["proxy"]),
            Quantiles.from_dict(data["software_sign"]),
            float(data["probe_median_ms"]),
            float(data["bytes_up"]),
            float(data["bytes_down"]),
            float(data["ready_ms"]),
            tuple(int(i) for i in data.get("run_ids", ())),
            float(data.get("writes_up", 0.0)),
            float(data.get("writes_down", 0.0)),
            float(data.get("probe2_median_ms", 0.0)),
        )


@dataclass(frozen=True)
class Calibration:
    """Every protocol's constants plus where they came from."""

    protocols: dict[str, ProtocolCalibration]
    card_host_ms: float
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def packaged(self) -> bool:
        """The calibration shipped with SAFE Lab, measured on another machine."""
        return bool(self.source) and Path(self.source).resolve() == PACKAGED

    def runs_text(self, run_ids: tuple[int, ...]) -> str:
        """Where the calibration's runs can be looked up. The packaged calibration's run IDs
        belong to the results store of the machine that measured it, not to this one's, so
        citing them bare would send a reader to unrelated runs."""
        if self.packaged:
            return (
                f"runs {list(run_ids)} of the store where the packaged calibration was measured "
                "(not this machine's; `safelab whatif calibrate` measures this one)"
            )
        return f"runs {list(run_ids)} in this results store"

    def protocol(self, name: str) -> ProtocolCalibration:
        key = "coap" if name == "coap-psk" else name
        try:
            return self.protocols[key]
        except KeyError:
            raise CalibrationError(
                f"the calibration ({self.source}) has no figures for {name}",
                f"run `safelab whatif calibrate --protocols {key}`",
            ) from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "provenance": self.provenance,
            "card_host_ms": round(self.card_host_ms, 4),
            "protocols": {k: v.as_dict() for k, v in self.protocols.items()},
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        return path


def user_calibration_path() -> Path:
    from drivers.paths import data_dir

    return data_dir() / "whatif" / "calibration.json"


def load_calibration(path: Path | None = None) -> Calibration:
    """The user's calibration if there is one, else the packaged one (or ``path``)."""
    candidates = [path] if path is not None else [user_calibration_path(), PACKAGED]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
                protocols = {
                    name: ProtocolCalibration.from_dict(name, table)
                    for name, table in data["protocols"].items()
                }
                return Calibration(
                    protocols,
                    float(data.get("card_host_ms", 0.0)),
                    dict(data.get("provenance", {})),
                    str(candidate),
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise CalibrationError(
                    f"calibration file {candidate} is damaged ({exc})",
                    "delete it and run `safelab whatif calibrate`",
                ) from None
    raise CalibrationError(
        "there is no what-if calibration", "run `safelab whatif calibrate` (a few minutes)"
    )


# ------------------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class MeasuredRun:
    """What calibration reads back from one stored protocol run."""

    run_id: int
    base_ms: list[float]
    """Per trial: total minus the signatures."""
    sign_ms: list[float]
    ready_ms: list[float]
    bytes_up: float
    bytes_down: float
    writes_up: float = 0.0
    writes_down: float = 0.0


def read_run(store: Any, run_id: int, trials_through_link: int) -> MeasuredRun:
    """A stored ``proto`` run's per-trial figures (and the link's bytes per trial)."""
    base, sign, ready = [], [], []
    for _idx, total_ns, phases in store.samples(run_id):
        signed = phases.get("sign", 0) or 0
        base.append((total_ns - signed) / 1e6)
        sign.append(signed / 1e6)
        ready.append((phases.get("ready", 0) or 0) / 1e6)
    link = store.get_run(run_id).extra.get("link") or {}
    stats = link.get("stats") or {}
    per = max(1, trials_through_link)
    up, down = stats.get("up") or {}, stats.get("down") or {}
    return MeasuredRun(
        run_id,
        base,
        sign,
        ready,
        float(up.get("bytes", 0)) / per,
        float(down.get("bytes", 0)) / per,
        float(up.get("packets", 0)) / per,
        float(down.get("packets", 0)) / per,
    )


RunOne = Callable[[str, str, str | None], int]
"""``run_one(protocol, token_uri, link) -> run_id``: one stored protocol run (the run kind
gives it, so tokens, PINs and peers stay the run service's)."""


def calibrate(
    run_one: RunOne,
    store: Any,
    *,
    protocols: Sequence[str] = CALIBRATED_PROTOCOLS,
    n: int = 20,
    warmup: int = 1,
    software_uri: str = "software:p256",
    step: Callable[[str], None] | None = None,
) -> Calibration:
    """Measure every protocol's constants with the real peers (see the module docstring)."""
    measured: dict[str, ProtocolCalibration] = {}
    peers: dict[str, str] = {}
    for protocol in protocols:
        runs = {}
        for label, link in (
            ("direct", None),
            ("proxy", "rtt=0ms"),
            ("probe", f"rtt={PROBE_RTT_MS:g}ms"),
            ("probe2", f"rtt={PROBE2_RTT_MS:g}ms"),
        ):
            if step is not None:
                step(f"{protocol} {label}")
            run_id = run_one(protocol, software_uri, link)
            runs[label] = read_run(store, run_id, n + warmup)
            record = store.get_run(run_id)
            peers[protocol] = f"{record.extra.get('peer')} {record.extra.get('peer_version')}"
        direct, proxy, probe, probe2 = (runs[k] for k in ("direct", "proxy", "probe", "probe2"))
        measured[protocol] = ProtocolCalibration(
            protocol,
            Quantiles.of(direct.base_ms),
            Quantiles.of(proxy.base_ms),
            Quantiles.of(direct.sign_ms + proxy.sign_ms),
            statistics.median(probe.base_ms),
            proxy.bytes_up,
            proxy.bytes_down,
            statistics.median(proxy.ready_ms),
            (direct.run_id, proxy.run_id, probe.run_id, probe2.run_id),
            proxy.writes_up,
            proxy.writes_down,
            statistics.median(probe2.base_ms),
        )
    if step is not None:
        step("emulated card host cost")
    card_run = run_one(
        protocols[0], "iotsafe:emulated;profile=paper-sim;speed=0;card=whatif-calibration", None
    )
    card = read_run(store, card_run, n + warmup)
    provenance = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "n": n,
        "warmup": warmup,
        "software_token": software_uri,
        "peers": peers,
        "card_host_run": card_run,
        "method": "safelab whatif calibrate: direct, proxy rtt=0ms and proxy "
        f"rtt={PROBE_RTT_MS:g}ms and {PROBE2_RTT_MS:g}ms runs per protocol with the software key",
    }
    return Calibration(measured, statistics.median(card.sign_ms), provenance)
