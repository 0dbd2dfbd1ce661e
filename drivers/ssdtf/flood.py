"""A HELLO flood against a running deployment, for the flood test and the benchmark.

The attacker of issue 10: a client that may CONNECT under a registered client ID (since the
per-role credentials, one that holds that device's broker secret) sends HELLOs, each of
which used to cost the gateway a signature and a new timer thread. Here one MQTT client
sends ``count`` HELLOs with fresh nonces, a share of them for unregistered client IDs (the
broker's ACL refuses those now); :func:`hello_flood` reports what that cost the gateway
(threads, table sizes, challenges signed) and whether the legitimate sessions survived.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.brokers import sensor_password
from drivers.ssdtf.endpoint import Endpoint
from drivers.ssdtf.wire import MsgType, T


@dataclass
class FloodReport:
    hellos: int
    seconds: float
    verdicts: int
    challenges: int
    threads_before: int
    threads_peak: int
    threads_after: int
    sizes_peak: dict[str, int] = field(default_factory=dict)
    survivors: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def hello_flood(
    dep: Any, count: int, victim: str, *, unknown_every: int = 4, timeout: float = 60.0
) -> FloodReport:
    """Flood ``dep``'s gateway with ``count`` HELLOs for ``victim`` (a registered client ID
    the flooder connects under) and, every ``unknown_every``-th, for an unregistered one."""
    gateway = dep.gateway
    before_verdicts = sum(1 for v in dep.trace.verdicts if v.role == "gateway")
    before_chal = _challenges(dep)
    threads_before = threading.active_count()
    nonce = os.urandom(16)
    # the flooder holds the victim's broker credential (a compromised device): without it
    # the broker refuses the CONNECT and the flood never reaches the gateway
    password = sensor_password(dep.policy.sensor_secrets[victim])
    username = nonce.hex() if dep.broker.kind == "embedded" else victim
    flooder = Endpoint(victim, dep.host, dep.port, username=username, password=password)
    flooder.connect(dep.cfg.connect_timeout_s)
    peak_threads = threading.active_count()
    peak: dict[str, int] = {}
    start = time.perf_counter()
    try:
        for index in range(count):
            cid = victim if unknown_every <= 0 or index % unknown_every else f"ghost-{index}"
            hello = wire.encode(MsgType.HELLO, {T.CID: cid.encode(), T.ND: os.urandom(16)})
            # the flooder may publish only on its own topics on a strict broker: the
            # ghosts' HELLOs then die at the broker, which is the point of the ACL
            flooder.publish(topics.auth_up(cid), hello, qos=0)
            if index % 100 == 0:
                peak_threads = max(peak_threads, threading.active_count())
                for key, size in gateway.state_sizes().items():
                    peak[key] = max(peak.get(key, 0), size)
        end = time.monotonic() + timeout
        last, still = -1, 0
        while time.monotonic() < end and still < 20:  # 1 s without a new verdict: done
            peak_threads = max(peak_threads, threading.active_count())
            for key, size in gateway.state_sizes().items():
                peak[key] = max(peak.get(key, 0), size)
            seen = sum(1 for v in dep.trace.verdicts if v.role == "gateway") - before_verdicts
            if seen >= count or not flooder.connected.is_set():
                break
            still = still + 1 if seen == last else 0
            last = seen
            time.sleep(0.05)
    finally:
        flooder.stop()
    seconds = time.perf_counter() - start
    time.sleep(0.2)
    return FloodReport(
        hellos=count,
        seconds=seconds,
        verdicts=sum(1 for v in dep.trace.verdicts if v.role == "gateway") - before_verdicts,
        challenges=_challenges(dep) - before_chal,
        threads_before=threads_before,
        threads_peak=peak_threads,
        threads_after=threading.active_count(),
        sizes_peak=peak,
        survivors={cid: gateway.is_ready(cid) for cid in dep.sensors if cid != victim},
    )


def _challenges(dep: Any) -> int:
    return sum(
        1 for v in dep.trace.verdicts if v.role == "gateway" and "challenge sent" in v.reason
    )
