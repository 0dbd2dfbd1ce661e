"""The paper's communication patterns (Table 7) as TOML profiles in ``profiles/patterns/``.

Each profile names its workload (``periodic``, ``poisson``, ``batch``, ``bulk``), its transport
(``mqtt``, ``https``, ``https-jwt``, ``coap``), its parameters and its latency budget; every
parameter can be overridden (``--set period_s=0.05``), so tests and benchmarks run the same
profile faster without a second copy of it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import SafeLabError

PROFILE_DIR = Path(__file__).resolve().parents[2] / "profiles" / "patterns"
WORKLOADS = ("periodic", "poisson", "batch", "bulk")
TRANSPORTS = ("mqtt", "https", "https-jwt", "coap", "vpn")

_NUMBERS = {
    "period_s": float,
    "mean_interval_s": float,
    "budget_ms": float,
    "qos": int,
    "payload_bytes": int,
    "batch_size": int,
    "auth_timeout_s": float,
    "give_up_s": float,
    "seed": int,
    "session_lifetime_s": float,
    "image_kb": int,
    "chunk_kb": int,
    "chunk_resume": int,
    "chunk_auth": int,
    "cut_after_chunks": int,
    "mqtt_keepalive_s": int,
}


@dataclass(frozen=True)
class PatternProfile:
    """One pattern: what the workload does and how late is too late."""

    name: str
    title: str
    table7: str
    workload: str
    transport: str
    budget_ms: float
    params: dict[str, Any] = field(default_factory=dict)
    remedies: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        return self.workload in WORKLOADS

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)

    def with_overrides(self, overrides: dict[str, str]) -> PatternProfile:
        """A copy with ``--set name=value`` parameters applied (numbers parsed, checked)."""
        params = dict(self.params)
        transport, budget = self.transport, self.budget_ms
        for key, raw in overrides.items():
            if key == "transport":
                if raw not in TRANSPORTS:
                    raise SafeLabError(
                        f"unknown transport {raw!r}", f"use one of {', '.join(TRANSPORTS)}"
                    )
                transport = raw
                continue
            kind = _NUMBERS.get(key)
            if kind is None:
                raise SafeLabError(
                    f"unknown pattern parameter or toggle {key!r}",
                    "see `safelab pattern list` for the parameters and toggles",
                )
            try:
                value = kind(raw)
            except ValueError:
                raise SafeLabError(
                    f"{key}={raw!r} is not a number", f"give {key} a number"
                ) from None
            if value < 0 or (key in ("period_s", "mean_interval_s", "batch_size") and not value):
                raise SafeLabError(f"{key} must be positive", f"fix {key}")
            if key == "qos" and value not in (0, 1, 2):
                raise SafeLabError("MQTT QoS is 0, 1 or 2", "fix qos")
            if key == "budget_ms":
                budget = float(value)
            params[key] = value
        return PatternProfile(
            self.name,
            self.title,
            self.table7,
            self.workload,
            transport,
            budget,
            params,
            self.remedies,
        )


def load_pattern(name: str) -> PatternProfile:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise SafeLabError(f"unknown pattern {name!r}", f"use one of {', '.join(pattern_names())}")
    data = tomllib.loads(path.read_text())
    known = {"name", "title", "table7", "workload", "transport", "budget_ms", "remedies"}
    return PatternProfile(
        name=str(data.get("name", name)),
        title=str(data.get("title", name)),
        table7=str(data.get("table7", "")),
        workload=str(data["workload"]),
        transport=str(data["transport"]),
        budget_ms=float(data["budget_ms"]),
        params={k: v for k, v in data.items() if k not in known},
        remedies=tuple(data.get("remedies", ())),
    )


def pattern_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def all_patterns() -> list[PatternProfile]:
    return [load_pattern(name) for name in pattern_names()]
