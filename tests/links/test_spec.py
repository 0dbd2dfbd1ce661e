"""The --link grammar and the shipped profiles: typed values, clear refusals, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.links import LinkSpec, LinkSpecError, list_profiles, load_profile, parse_link
from drivers.links.profiles import PROFILE_DIR


def test_full_spec_parses_into_both_directions() -> None:
    spec = parse_link("rtt=100ms,jitter=10ms,loss=1%,rate=256kbit")
    for direction in (spec.up, spec.down):
        assert direction.delay == pytest.approx(0.05)
        assert direction.jitter == pytest.approx(0.01)
        assert direction.loss == pytest.approx(0.01)
        assert direction.rate == pytest.approx(256_000)
    assert spec.rtt == pytest.approx(0.1)


def test_per_direction_fields_override_the_shared_ones() -> None:
    spec = parse_link("rtt=100ms, rate=1mbit, up.rate=64kbit, down.loss=2%, up.delay=10ms")
    assert spec.up.rate == 64_000 and spec.down.rate == 1_000_000
    assert spec.up.loss == 0 and spec.down.loss == pytest.approx(0.02)
    assert spec.up.delay == pytest.approx(0.01) and spec.down.delay == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        ("rtt=100", "rtt", "100ms"),
        ("loss=1", "loss", "1%"),
        ("rate=256kbps", "rate", "kbit"),
        ("rate=256", "rate", "kbit"),
        ("delay=5 parsecs", "delay", "ms"),
        ("jitter=-1ms", "jitter", "ms"),
        ("loss=100%", "loss", "below 100%"),
        ("rtt=100s", "rtt", "unit"),
        ("bandwidth=1mbit", "bandwidth", "rtt"),
        ("up.rtt=10ms", "up.rtt", "up.delay"),
        ("left.rate=1mbit", "left.rate", "up."),
        ("queue=0", "queue", "queue="),
        ("rtt=100ms,nonsense", "nonsense", "key=value"),
        ("rtt=", "rtt", "rtt="),
    ],
)
def test_bad_fields_name_the_field_and_the_fix(text: str, field: str, fix: str) -> None:
    with pytest.raises(LinkSpecError) as caught:
        parse_link(text)
    assert field in caught.value.problem
    assert fix in caught.value.fix
    assert "\n" not in caught.value.one_line()


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(LinkSpecError) as caught:
        parse_link("carrier-pigeon")
    assert "carrier-pigeon" in caught.value.problem
    assert "lte-m" in caught.value.fix and "nb-iot" in caught.value.fix


def test_profile_name_then_overrides() -> None:
    base = load_profile("LTE-M")
    spec = parse_link("lte-m, loss=3%, up.rate=100kbit")
    assert spec.up.loss == spec.down.loss == pytest.approx(0.03)
    assert spec.up.rate == 100_000
    assert spec.down.rate == base.down.rate
    assert spec.rtt == pytest.approx(base.rtt)


def uncommented_figures(path: Path) -> list[str]:
    """Lines of the [link] table whose block has no comment (source or assumption) above."""
    missing, in_link, commented = [], False, False
    for line in (raw.strip() for raw in path.read_text().splitlines()):
        if line.startswith("["):
            in_link, commented = line.startswith("[link"), False
        elif not line:
            commented = False
        elif line.startswith("#"):
            commented = True
        elif in_link and not commented:
            missing.append(line)
    return missing


def test_shipped_profiles_cover_the_issue_and_cite_their_figures() -> None:
    profiles = {profile.key: profile for profile in list_profiles()}
    assert set(profiles) >= {"lte-m", "nb-iot", "gprs", "satellite", "wifi-lab"}
    for key, profile in profiles.items():
        assert profile.spec.rtt > 0, key
        assert profile.spec.up.rate and profile.spec.down.rate, key
        assert uncommented_figures(PROFILE_DIR / f"{key}.toml") == [], key
    cited = " ".join(path.read_text() for path in PROFILE_DIR.glob("*.toml"))
    for source in ("3GPP TS 36.306", "TR 45.820", "Ericsson", "Chakravorty", "35,786 km"):
        assert source in cited
    # Orders of magnitude the profiles exist to show: NB-IoT and GEO are slow, Wi-Fi is not.
    assert profiles["nb-iot"].spec.rtt > profiles["satellite"].spec.rtt > 0.4
    assert profiles["wifi-lab"].spec.rtt < 0.01


@pytest.mark.parametrize(
    "text",
    ["rtt=100ms,jitter=10ms,loss=1%,rate=256kbit", "up.delay=5ms,down.delay=45ms", "gprs"],
)
def test_describe_round_trips(text: str) -> None:
    spec = parse_link(text)
    again = parse_link(spec.describe())
    assert (again.up, again.down, again.seed) == (spec.up, spec.down, spec.seed)


def test_empty_spec_is_refused_and_default_is_identity() -> None:
    with pytest.raises(LinkSpecError):
        parse_link("  ")
    assert LinkSpec().is_identity
    assert not parse_link("rtt=1ms").is_identity
