"""The endpoint's topic-filter matcher agrees with paho's reference implementation."""

from __future__ import annotations

import itertools

import paho.mqtt.client as mqtt

from drivers.ssdtf.endpoint import topic_filter

FILTERS = [
    "#",
    "+",
    "a",
    "a/#",
    "a/+",
    "a/+/c",
    "+/+",
    "+/b/#",
    "ssdtf/v1/out/user-1/+",
    "ssdtf/v1/out/#",
    "ssdtf/v1/int/+",
    "$SYS/#",
    "a//c",
    "/+",
]
TOPICS = [
    "a",
    "a/b",
    "a/b/c",
    "a/b/c/d",
    "b",
    "",
    "/",
    "/a",
    "a/",
    "a//c",
    "$SYS/x",
    "$SYS",
    "ssdtf/v1/out/user-1/abc",
    "ssdtf/v1/out/user-2/abc",
    "ssdtf/v1/out/user-1/abc/x",
    "ssdtf/v1/int/user-1",
    "x/b/y",
]


def test_matches_exactly_where_paho_does() -> None:
    differ = [
        (f, t)
        for f, t in itertools.product(FILTERS, TOPICS)
        if topic_filter(f)(t) != mqtt.topic_matches_sub(f, t)
    ]
    assert differ == []
    # and the product really exercised both outcomes
    outcomes = {topic_filter(f)(t) for f, t in itertools.product(FILTERS, TOPICS)}
    assert outcomes == {True, False}
