"""The optimisation lab: the paper's communication patterns (Table 7) as live workloads on the
real peers, its remedies as toggles that are real mechanisms, the metrics it says to watch.

- :mod:`.profile` -- the patterns (``profiles/patterns/*.toml``): workload, transport,
  parameters, latency budget;
- :mod:`.toggles` -- the remedies as :class:`~.toggles.Toggles` and the live
  :class:`~.toggles.ToggleBoard` (which toggle applies where: :mod:`drivers.protocols.rules`);
- :mod:`.devices` -- the device side (paho-mqtt, ``http.client`` + JWT, CoAP) on the
  token-bridged TLS contexts, each toggle a mechanism;
- :mod:`.faults` -- the token watched (card busy time, signatures, errors, no reused
  signature value) and card outages injected;
- :mod:`.engine` -- the schedule (periodic, Poisson, batch), request-path latency, retries
  with or without back-off;
- :mod:`.metrics` -- the summary and the A/B deltas.

Runs go through :mod:`drivers.runs.pattern` (``PatternRun``, ``PatternCompareRun``).
"""
