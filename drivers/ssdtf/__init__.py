"""SSDTF over MQTT: the five roles, the strict wire format, proxy re-encryption, pseudonyms,
a packet tap with step control, attacks, and trace export (JSON, pcap).

No UI imports here: the CLI (``console/cli_ssdtf.py``) and the console's packet stepper both
drive :class:`drivers.ssdtf.deployment.Deployment` and read its
:class:`drivers.ssdtf.trace.Trace`. See ``docs/ssdtf.md`` for the design.
"""
