"""Who may do what on the broker: one least-privilege rule set, enforced by both brokers.

Each principal has its own credential and its own client ID (no shared service credential,
issue 10 class 4), and exactly the topic rights its role needs:

- gateway: reads ``auth/+/up``, ``up/+``, ``prov/gateway``; writes ``auth/+/down``,
  ``ack/+``, ``int/+``;
- ds: reads ``int/+``, ``resend/+``, ``prov/ds``; writes ``out/+/+``;
- ms: reads ``report/+``, ``reg/+``; writes ``reg/ms`` (its own registrations, models 1 and 3)
  and ``prov/+`` (registrations it accepted, to gateway and DS);
- user-N: reads ``out/user-N/+`` (its own deliveries only); writes only its own re-send
  requests ``resend/user-N``, reports ``report/user-N`` and registrations ``reg/user-N`` (the
  MS decides whether it is the registrar: the broker only stops it speaking as another);
- sensor ``cid``: reads ``auth/cid/down``, ``ack/cid``; writes ``auth/cid/up``, ``up/cid``,
  ``report/cid``.

So a data user cannot read uplinks (no mapping pseudonyms to devices by matching capsules) nor
another user's deliveries, a sensor writes only its own uplink, and nobody but the gateway can
publish a challenge or a FWD. :func:`mosquitto_acl` writes the same rules as a Mosquitto ACL
file; :func:`allowed` answers for the embedded amqtt broker's plugin.
"""

from __future__ import annotations

from dataclasses import dataclass

import paho.mqtt.client as mqtt

from drivers.ssdtf.config import PREFIX

READ = "read"
WRITE = "write"


@dataclass(frozen=True)
class Rule:
    access: str
    pattern: str


def service_rules(user: str) -> list[Rule]:
    p = PREFIX
    if user == "gateway":
        return [
            Rule(READ, f"{p}/auth/+/up"),
            Rule(READ, f"{p}/up/+"),
            Rule(WRITE, f"{p}/auth/+/down"),
            Rule(WRITE, f"{p}/ack/+"),
            Rule(WRITE, f"{p}/int/+"),
            Rule(READ, f"{p}/prov/gateway"),
        ]
    if user == "ds":
        return [
            Rule(READ, f"{p}/int/+"),
            Rule(READ, f"{p}/resend/+"),
            Rule(WRITE, f"{p}/out/+/+"),
            Rule(READ, f"{p}/prov/ds"),
        ]
    if user == "ms":
        return [
            Rule(READ, f"{p}/report/+"),
            Rule(READ, f"{p}/reg/+"),
            Rule(WRITE, f"{p}/reg/ms"),
            Rule(WRITE, f"{p}/prov/+"),
        ]
    if user.startswith("user-"):
        return [
            Rule(READ, f"{p}/out/{user}/+"),
            Rule(WRITE, f"{p}/resend/{user}"),
            Rule(WRITE, f"{p}/report/{user}"),
            Rule(WRITE, f"{p}/reg/{user}"),
        ]
    return []


def sensor_rules(cid: str) -> list[Rule]:
    p = PREFIX
    return [
        Rule(READ, f"{p}/auth/{cid}/down"),
        Rule(READ, f"{p}/ack/{cid}"),
        Rule(WRITE, f"{p}/auth/{cid}/up"),
        Rule(WRITE, f"{p}/up/{cid}"),
        Rule(WRITE, f"{p}/report/{cid}"),
    ]


def covers(pattern: str, topic_filter: str) -> bool:
    """True if every topic ``topic_filter`` can match is matched by ``pattern`` (a
    subscription is allowed only when it cannot reach beyond the rule)."""
    want = topic_filter.split("/")
    have = pattern.split("/")
    for index, level in enumerate(want):
        if index >= len(have):
            return False
        rule = have[index]
        if rule == "#":
            return True
        if level == "#":
            return False
        if rule == "+":
            continue
        if level != rule:
            return False
    return len(want) == len(have)


def allowed(rules: list[Rule], action: str, topic: str) -> bool:
    """``action`` is ``subscribe`` (``topic`` is a filter), ``receive`` or ``publish``."""
    if action == "subscribe":
        return any(r.access == READ and covers(r.pattern, topic) for r in rules)
    access = READ if action == "receive" else WRITE
    if "+" in topic or "#" in topic:
        return False
    return any(r.access == access and mqtt.topic_matches_sub(r.pattern, topic) for r in rules)


def mosquitto_acl(services: list[str]) -> str:
    """The ACL file: services by user name; sensors by pattern on their user name, which
    Mosquitto forces to be the client ID (``use_username_as_clientid``)."""
    lines = ["# SAFE Lab SSDTF: least privilege per role (drivers/ssdtf/acl.py)"]
    for user in services:
        lines.append(f"\nuser {user}")
        lines += [f"topic {r.access} {r.pattern}" for r in service_rules(user)]
    lines.append("\n# every other user is a sensor whose user name is its client ID")
    for rule in sensor_rules("%u"):
        lines.append(f"pattern {rule.access} {rule.pattern}")
    return "\n".join(lines) + "\n"
