"""Card profiles: loading, clear errors for broken files, and the statistics they produce.

No wall-clock asserts: the statistics are those of the sampled (modelled) delays, read through
:class:`RecordingDelay` or straight from the distributions, with fixed seeds.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from drivers.cards.emulator import (
    INSTANT,
    Dist,
    IoTSafeApplet,
    PreciseDelay,
    Quirks,
    RecordingDelay,
    list_profiles,
    load_profile,
    parse_profile,
    provision_lab_card,
)
from drivers.cards.emulator.predict import modelled_trials
from drivers.cards.errors import ProfileError
from drivers.tokens.base import HashOn


def test_shipped_profiles_load() -> None:
    assert {"paper-sim", "discrete-se"} <= set(list_profiles())
    paper = load_profile("paper-sim")
    assert paper.name == "paper-sim" and paper.quirks.signature_length == "two-byte"
    assert paper.crypto["ecdsa_sign"].mean_ms > 400
    se = load_profile("discrete-se")
    assert 20 < se.crypto["ecdsa_sign"].mean_ms < 100
    assert load_profile(Path(paper.source)).name == "paper-sim"


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("no-such-card")
    assert "paper-sim" in info.value.fix


GOOD = """
[profile]
name = "t"
[transport]
base = { dist = "constant", ms = 1.0 }
[card.commands]
select = { dist = "normal", mean_ms = 1.0, sigma_ms = 0.1 }
"""


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[profile\nname=1", "not valid TOML"),
        (GOOD + "[extra]\n", "field extra"),
        (GOOD.replace("sigma_ms = 0.1", "sigma_ms = -1"), "card.commands.select.sigma_ms"),
        (GOOD.replace("sigma_ms = 0.1", 'sigma_ms = "x"'), "card.commands.select.sigma_ms"),
        (GOOD.replace(", sigma_ms = 0.1", ""), "card.commands.select.sigma_ms"),
        (GOOD.replace('dist = "normal"', 'dist = "weibull"'), "card.commands.select.dist"),
        (GOOD.replace("select =", "selct ="), "card.commands.selct"),
        (GOOD.replace("ms = 1.0 }", "ms = 1.0, mean_ms = 2 }", 1), "transport.base.mean_ms"),
        (GOOD + "[quirks]\nt0 = 3\n", "quirks.t0"),
        (GOOD + '[quirks]\ncla = "both-ish"\n', "quirks.cla"),
        (GOOD + "[quirks]\nfoo = 1\n", "quirks.foo"),
        (GOOD + "[quirks]\nmax_sessions = 40\n", "quirks.max_sessions"),
        (GOOD + "[quirks]\nfirst_session = true\n", "quirks.first_session"),
        (
            GOOD.replace(
                "sigma_ms = 0.1 }", 'sigma_ms = 0.1, tail = { p = 2, dist = "constant", ms = 1 } }'
            ),
            "card.commands.select.tail.p",
        ),
        (
            GOOD.replace(
                "sigma_ms = 0.1 }", 'sigma_ms = 0.1, tail = { dist = "constant", ms = 1 } }'
            ),
            "card.commands.select.tail.p",
        ),
        (GOOD + '[card.crypto]\nrsa = { dist = "constant", ms = 1 }\n', "card.crypto.rsa"),
    ],
)
def test_broken_profile_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(path) in info.value.problem
    assert field in info.value.problem
    assert info.value.fix


def test_quirks_are_typed_and_overrides_checked() -> None:
    paper = load_profile("paper-sim")
    assert isinstance(paper.quirks, Quirks) and paper.quirks.t0 is True
    changed = paper.with_quirks(t0=False, cla="iso")
    assert (changed.quirks.t0, changed.quirks.cla) == (False, "iso")
    assert paper.quirks.t0 is True  # the loaded profile is unchanged
    with pytest.raises(ProfileError) as info:
        paper.with_quirks(stale_session="ignore")
    assert "quirks.stale_session" in info.value.problem and "error, replace" in info.value.fix


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "absent.toml")
    assert "absent.toml" in info.value.problem


def sample(dist: Dist, count: int = 20_000, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [dist.sample(rng) for _ in range(count)]


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def share(values: list[float], above: float) -> float:
    return sum(v > above for v in values) / len(values)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


def test_distribution_sampling_statistics() -> None:
    normal = sample(Dist("normal", {"mean_ms": 100.0, "sigma_ms": 10.0}))
    assert abs(mean(normal) - 100) < 0.5 and abs(statistics.pstdev(normal) - 10) < 0.5
    lognormal = sample(Dist("lognormal", {"median_ms": 50.0, "sigma": 0.5}))
    assert abs(statistics.median(lognormal) - 50) < 1.5
    expo = sample(Dist("exponential", {"mean_ms": 5.0}))
    assert abs(mean(expo) - 5) < 0.2
    uniform = sample(Dist("uniform", {"low_ms": 1.0, "high_ms": 3.0}))
    assert min(uniform) >= 1 and max(uniform) <= 3
    assert set(sample(Dist("constant", {"ms": 2.0}), 100)) == {2.0}
    clamped = sample(Dist("normal", {"mean_ms": 0.0, "sigma_ms": 1.0}, min_ms=0.5))
    assert min(clamped) == 0.5


def test_heavy_tail_frequency_and_mean() -> None:
    tail = Dist("constant", {"ms": 1000.0})
    dist = Dist("normal", {"mean_ms": 40.0, "sigma_ms": 1.0}, tail_p=0.05, tail=tail)
    values = sample(dist, 40_000)
    assert abs(share(values, 500) - 0.05) < 0.005
    assert abs(mean(values) - dist.mean_ms) < 3


def test_paper_sim_tail_is_on_the_link_of_select_only() -> None:
    """[tail] on = "link:select": the paper's sporadic communication delay at session start."""
    profile = load_profile("paper-sim")
    assert profile.tail_on == "link:select"
    rng = random.Random(3)
    select_link = [profile.transport_ms(20, rng, "select") for _ in range(40_000)]
    assert 0.035 < share(select_link, 300) < 0.05
    select_card = [profile.card_ms("select", rng) for _ in range(5_000)]
    update_link = [profile.transport_ms(80, rng, "compute_signature_update") for _ in range(5_000)]
    assert max(select_card) < 300 and max(update_link) < 300


def test_tail_placement_is_checked_and_applies_where_placed() -> None:
    card = parse_profile(
        {"tail": {"on": "get_data", "p": 1.0, "dist": "constant", "ms": 100.0}}, "t.toml"
    )
    rng = random.Random(1)
    assert card.card_ms("get_data", rng) == 100.0 and card.card_ms("select", rng) == 0.0
    assert card.transport_ms(10, rng, "get_data") == 0.0
    link = parse_profile({"tail": {"on": "link", "p": 1.0, "dist": "constant", "ms": 7.0}}, "t")
    assert link.transport_ms(10, rng, "select") == 7.0 and link.card_ms("select", rng) == 0.0
    assert link.with_quirks(t0=False).tail_on == "link"
    with pytest.raises(ProfileError) as info:
        parse_profile({"tail": {"on": "link:nonsense", "p": 0.1, "dist": "constant", "ms": 1}}, "t")
    assert "tail.on" in info.value.problem


def test_paper_sim_login_is_a_verify_pin_with_its_own_time() -> None:
    """The medians (the tail moves means) differ by VERIFY: 20 ms card + its APDU's link."""
    with_login = statistics.median(
        modelled_trials("paper-sim", "total", trials=300, seed=4, spec_extra=";login=verify")
    )
    without = statistics.median(modelled_trials("paper-sim", "total", trials=300, seed=4))
    assert 18 < with_login - without < 38


def stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": mean(values),
        "sd": statistics.stdev(values),
        "p50": statistics.median(values),
        "p99": percentile(values, 99),
        "over_1s": share(values, 1000),
    }


def test_paper_sim_matches_table_3_sign_only() -> None:
    """Table 3 sign_only: mean 476.5 ms, σ 9.2, P50 475.1, P99 494.8."""
    s = stats(modelled_trials("paper-sim", "sign_only", trials=400, seed=11))
    assert 466 < s["mean"] < 487
    assert 6 < s["sd"] < 13
    assert 465 < s["p50"] < 486
    assert s["p99"] < 510 and s["over_1s"] == 0


def test_paper_sim_matches_table_3_total() -> None:
    """Table 3 total: mean 677.7 ms, σ 177.2, P50 642.2, P99 1739.4, 4 % over 1 s."""
    s = stats(
        modelled_trials("paper-sim", "total", trials=1500, seed=5, spec_extra=";login=verify")
    )
    assert 640 < s["mean"] < 720
    assert 120 < s["sd"] < 240
    assert 630 < s["p50"] < 655
    assert 1300 < s["p99"] < 2200
    assert 0.02 < s["over_1s"] < 0.07


def test_discrete_se_is_tens_of_ms() -> None:
    s = stats(modelled_trials("discrete-se", "total", trials=200, seed=1))
    assert 20 < s["mean"] < 150 and s["over_1s"] == 0


def test_on_card_hashing_and_extra_apdus_change_modelled_time() -> None:
    long = bytes(4096)
    host = statistics.mean(modelled_trials("paper-sim", "sign_only", trials=30, data=long))
    card = statistics.mean(
        modelled_trials("paper-sim", "sign_only", trials=30, data=long, hash_on=HashOn.TOKEN)
    )
    # 4 KB on the card: ~18 more UPDATE APDUs and their bytes over the link, plus card hashing
    assert card - host > 500
    listed = statistics.mean(modelled_trials("paper-sim", "total", trials=60, seed=2))
    direct = statistics.mean(
        modelled_trials("paper-sim", "total", trials=60, seed=2, spec_extra=";find=info;key=01")
    )
    assert direct < listed  # a short GET DATA C1 moves fewer bytes than the object list


def test_speed_factor_scales_the_realised_delay() -> None:
    profile = load_profile("paper-sim")
    delay = RecordingDelay()
    applet = IoTSafeApplet(provision_lab_card(), profile, speed=0.01, seed=3, delay=delay)
    applet.process_apdu(bytes.fromhex("0070000001"))
    applet.process_apdu(bytes.fromhex("01A4040007A0000005590010"))
    for sampled, realised in zip(applet.samples, delay.delays_ns, strict=True):
        assert realised == int(sampled.total_ms * 1e6 * 0.01)
        assert sampled.transport_ms > 0 and sampled.card_ms > 0
    still = IoTSafeApplet(provision_lab_card(), INSTANT, speed=1, delay=RecordingDelay())
    still.process_apdu(bytes.fromhex("0070000001"))
    assert still.delay.delays_ns == [0]  # type: ignore[attr-defined]


def test_same_seed_same_delays() -> None:
    first = modelled_trials("paper-sim", "total", trials=5, seed=9)
    again = modelled_trials("paper-sim", "total", trials=5, seed=9)
    assert first == again


def test_precise_delay_never_returns_early() -> None:
    """A lower bound only (never flaky): the wait ends at or after its deadline."""
    import time

    delay = PreciseDelay(spin_ns=200_000)
    for delay_ns in (0, 50_000, 300_000, 2_000_000):
        start = time.perf_counter_ns()
        delay.wait(start, delay_ns)
        assert time.perf_counter_ns() - start >= delay_ns
