"""The what-if lab: predict a protocol's or a pattern's latency before measuring it.

A discrete-event model (SimPy) of handshakes and pattern workloads, made of parts that each
say where they come from:

- :mod:`~drivers.whatif.flights`: protocol flight models (round trips, bytes per flight,
  which flight carries the client's signature; full, resumed, PSK and keep-alive paths);
- :mod:`~drivers.whatif.calibration`: the loopback constants measured with the real peers
  (``safelab whatif calibrate``), stored as data with provenance;
- :mod:`~drivers.whatif.tokens`: token models from card profiles (the emulator's modelled
  APDU flow) and the software key, per signature :class:`Algorithm` (pluggable:
  :func:`register_algorithm`);
- :mod:`~drivers.whatif.linkmodel`: a link (:mod:`drivers.links` spec) as per-flight delay,
  jitter, serialisation and loss (TCP loss modelled as the link proxy models it);
- :mod:`~drivers.whatif.engine` and :mod:`~drivers.whatif.workload`: the simulation, giving
  a :class:`Prediction` (P50/P90/P99, deadline-miss rate, card utilisation, provenance).

Public API (other run kinds, Table 7)::

    from drivers.whatif import Scenario, predict, predict_pattern_cell

    p = predict(Scenario("mqtt", "iotsafe:emulated;profile=paper-sim", link="lte-m"))
    p.p50, p.p99, p.miss_rate, p.card_utilisation, p.provenance
    cell = predict_pattern_cell("periodic", "iotsafe:emulated", toggles="keepalive=on")

Front ends run predictions and validations through :class:`drivers.runs.WhatIfRun`.
"""

from __future__ import annotations

from drivers.whatif.calibration import (
    Calibration,
    CalibrationError,
    load_calibration,
    user_calibration_path,
)
from drivers.whatif.engine import Prediction, Scenario, predict
from drivers.whatif.flights import MODELLED_PROTOCOLS, FlightPath, flight_path
from drivers.whatif.tokens import ALGORITHMS, Algorithm, TokenModel, register_algorithm
from drivers.whatif.workload import parse_toggles


def predict_pattern_cell(
    pattern: str,
    token: str,
    *,
    toggles: str | tuple[str, ...] = (),
    link: str | None = None,
    alg: str = "p256",
    speed: float | None = None,
    events: int = 1000,
    seed: int = 1,
    horizon: int | None = None,
    calibration: Calibration | None = None,
) -> Prediction:
    """One Table 7 cell predicted: ``pattern`` on ``token`` with remedies ``toggles``
    (``'keepalive=on,resume=on'``; pattern parameters such as ``period_s=0.5`` too), over
    ``link``, signing with ``alg``. Read ``.p99``, ``.deadline_ms`` (the pattern's budget),
    ``.miss_rate``, ``.card_utilisation`` and ``.provenance``. ``horizon``: the schedule's
    first ``horizon`` events repeated until ``events`` (to compare with a measured run of
    ``horizon`` events, which sees the start-up and only those arrivals)."""
    scenario = Scenario(
        token=token,
        link=link,
        alg=alg,
        speed=speed,
        pattern=pattern,
        toggles=parse_toggles(toggles),
        n=events,
        seed=seed,
        horizon=horizon,
    )
    return predict(scenario, calibration)


__all__ = [
    "ALGORITHMS",
    "MODELLED_PROTOCOLS",
    "Algorithm",
    "Calibration",
    "CalibrationError",
    "FlightPath",
    "Prediction",
    "Scenario",
    "TokenModel",
    "flight_path",
    "load_calibration",
    "parse_toggles",
    "predict",
    "predict_pattern_cell",
    "register_algorithm",
    "user_calibration_path",
]
