"""Fitting a card profile from recorded runs (``drivers.cards.fit``), against real parts.

Runs are made two ways, both stored in a real :class:`ResultsStore` in a temp directory:

- with the real :class:`ExperimentRunner` on the emulated ``discrete-se`` card at speed 1
  (~65 ms per signature, so 25 trials per mode take a few seconds);
- from the emulator's modelled delays (:class:`RecordingDelay`, no waiting) for ``paper-sim``,
  whose 476 ms signatures would take minutes to wait for: the same token flow and APDUs, with
  each phase's modelled time stored as the run's phase time.

No mocks and no wall-clock asserts: the checks compare the fitted profile's modelled statistics
with the run's, and the figures recovered from modelled runs with the profile that made them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.bench.runner import ExperimentRunner, Mode, RunConfig, collect_versions
from drivers.bench.store import ResultsStore
from drivers.cards.emulator import load_profile
from drivers.cards.emulator.predict import modelled_trials
from drivers.cards.fit import (
    EmulatedRunError,
    FitError,
    MissingPhasesError,
    MixedRunsError,
    NotACardRunError,
    TooFewSamplesError,
    fit_profile,
    modelled_phase_trials,
)
from drivers.cards.iotsafe_token import emulated_token, open_iotsafe, parse_options
from drivers.errors import StoreError
from drivers.tokens.base import Pin
from drivers.tokens.registry import open_token

SE_SPEC = "iotsafe:emulated;profile=discrete-se;speed=1;seed=3"
PAPER_SPEC = "iotsafe:emulated;profile=paper-sim;speed=1;seed=3"
PAPER = {"sign_only": 476.5, "total": 677.7}
"""Table 3 means (ms)."""


def runner_run(store: ResultsStore, spec: str, mode: Mode, n: int, **kw: object) -> int:
    """A run made by the real runner on a token from ``spec``; returns its run ID."""
    token = open_iotsafe(spec) if spec.startswith("iotsafe:") else open_token(spec)
    try:
        runner = ExperimentRunner(token, RunConfig(mode=mode, n=n, warmup=1), store, **kw)
        return runner.run().run_id
    finally:
        token.close()


def modelled_run(
    store: ResultsStore, spec: str, mode: str, n: int, seed: int, curve: str = "secp256r1"
) -> int:
    """A run whose phase times are the emulator's modelled delays for ``spec`` (no waiting)."""
    options = parse_options(spec)
    token = emulated_token(options)
    info = token.info.as_dict()
    token.close()
    flow = [p for p in options.uri().split(";")[3:] if not p.startswith(("seed=", "card="))]
    extra = "".join(f";{part}" for part in flow)  # curves=, key=: which key signs
    trials, _ = modelled_phase_trials(options.profile, mode, trials=n, seed=seed, spec_extra=extra)
    run_id = store.create_run(
        experiment="sign",
        mode=mode,
        n_planned=n,
        warmup=0,
        data_len=32,
        hash_on="host",
        threshold_ms=1000.0,
        token=info,
        versions=collect_versions(),
        extra={"curve": curve, "key": "modelled"},
    )
    rows = []
    for idx, phases in enumerate(trials):
        phase_ns = {p: round(ms * 1e6) for p, ms in phases.items()}
        if mode == "total":
            phase_ns["login"] = 0
        rows.append((idx, sum(phase_ns.values()), phase_ns))
    store.add_samples(run_id, rows)
    store.finish_run(run_id, "complete")
    return run_id


@pytest.fixture(scope="module")
def se_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultsStore, int, int]:
    """A sign_only and a total run of the emulated discrete-se card, made by the runner."""
    store = ResultsStore(tmp_path_factory.mktemp("fit-se") / "results.sqlite")
    sign_only = runner_run(store, SE_SPEC, Mode.SIGN_ONLY, 25)
    total = runner_run(store, SE_SPEC, Mode.TOTAL, 25)
    return store, sign_only, total


@pytest.fixture(scope="module")
def paper_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultsStore, int, int]:
    """Modelled paper-sim runs: sign_only n=100 (as the paper), total n=300 (tail needs n)."""
    store = ResultsStore(tmp_path_factory.mktemp("fit-paper") / "results.sqlite")
    return (
        store,
        modelled_run(store, PAPER_SPEC, "sign_only", 100, 1),
        modelled_run(store, PAPER_SPEC, "total", 300, 2),
    )


# ------------------------------------------------------------------------------- phase model


@pytest.mark.parametrize("mode", ["sign_only", "total"])
def test_phase_model_sums_to_predict(mode: str) -> None:
    """The per-phase flow is predict.modelled_trials read phase by phase: same totals."""
    phases, commands = modelled_phase_trials("paper-sim", mode, trials=8, seed=4)
    totals = modelled_trials("paper-sim", mode, trials=8, seed=4)
    assert [sum(p.values()) for p in phases] == pytest.approx(totals, abs=1e-6)
    assert commands["sign_init"] == ["compute_signature_init"]
    assert commands["sign"] == ["compute_signature_update", "get_response"]  # T=0 SIM
    if mode == "total":
        assert commands["open"] == ["manage_channel", "select"]
        assert commands["find"][0] == "get_data"


# ------------------------------------------------------------------------------- fits


def test_fit_runner_runs_profile_loads_and_matches(
    se_runs: tuple[ResultsStore, int, int], tmp_path: Path
) -> None:
    store, sign_only, total = se_runs
    result = fit_profile(
        store,
        [sign_only, total],
        name="se-fit",
        base_profile="discrete-se",
        allow_emulated=True,
        model_trials=400,
    )
    saved = load_profile(result.save(tmp_path / "se-fit.toml"))
    assert (
        saved.name == "se-fit" and saved.crypto["ecdsa_sign"] == result.profile.crypto["ecdsa_sign"]
    )
    assert saved.transport_base == load_profile("discrete-se").transport_base  # link kept
    assert f"run {sign_only}: sign_only, n = 25" in result.toml
    assert f"run {total}: total, n = 25" in result.toml
    assert "# open phase of run(s)" in result.toml and "to ecdsa_sign" in result.toml
    assert set(result.comparisons) == {"sign_only", "total"}
    for comparison in result.comparisons.values():
        assert comparison.run.n == 25 and comparison.model.n == 400
        assert abs(comparison.rel_diff("mean_ms")) < 0.05
        assert abs(comparison.rel_diff("p50_ms")) < 0.05
        assert comparison.model.over_1s == 0
    assert result.comparisons["total"].run_ids == (total,)


def test_fit_paper_sim_comes_back_to_table_3(paper_runs: tuple[ResultsStore, int, int]) -> None:
    store, sign_only, total = paper_runs
    result = fit_profile(
        store, [sign_only, total], name="paper-fit", allow_emulated=True, model_trials=800
    )
    base = load_profile("paper-sim")
    fitted = result.profile
    for mode, paper_mean in PAPER.items():
        comparison = result.comparisons[mode]
        assert abs(comparison.model.mean_ms - paper_mean) / paper_mean < 0.05
        assert abs(comparison.rel_diff("mean_ms")) < 0.03
        assert abs(comparison.rel_diff("p50_ms")) < 0.03
    assert abs(result.comparisons["sign_only"].rel_diff("stdev_ms")) < 0.25
    # The figures that made the runs come back: ECDSA, the commands, the tail on SELECT.
    ecdsa = fitted.crypto["ecdsa_sign"].params["mean_ms"]
    assert abs(ecdsa - base.crypto["ecdsa_sign"].params["mean_ms"]) < 0.03 * ecdsa
    get_data = fitted.commands["get_data"].params["mean_ms"]
    assert abs(get_data - base.commands["get_data"].params["mean_ms"]) < 6.0
    select = fitted.commands["select"]
    assert select.tail is not None and 0.02 < select.tail_p < 0.09
    assert 400 < select.tail.mean_ms < 1300
    assert 0.02 < result.comparisons["total"].model.over_1s < 0.09
    assert fitted.commands["get_response"] == base.commands["get_response"]  # shared, kept
    assert fitted.crypto["ecdh"] == base.crypto["ecdh"]


def test_sign_only_run_fits_signing_and_keeps_the_rest(
    paper_runs: tuple[ResultsStore, int, int],
) -> None:
    store, sign_only, _ = paper_runs
    result = fit_profile(
        store, [sign_only], name="sign-only", allow_emulated=True, model_trials=300
    )
    base = load_profile("paper-sim")
    assert set(result.comparisons) == {"sign_only"}
    assert result.profile.commands["select"] == base.commands["select"]  # base tail kept
    assert result.profile.commands["get_data"] == base.commands["get_data"]
    assert result.profile.crypto["ecdsa_sign"] != base.crypto["ecdsa_sign"]
    assert "Fitted phases: sign_init from sign_only, sign from sign_only." in result.toml


def test_brainpool_run_fits_p256_ecdsa_through_the_curve_factor(tmp_path: Path) -> None:
    """A brainpool key signs 1.3x slower on paper-sim; the fit divides that factor out."""
    store = ResultsStore(tmp_path / "results.sqlite")
    run = modelled_run(
        store,
        PAPER_SPEC + ";curves=p256,bp256;key=client-bp",
        "sign_only",
        60,
        6,
        curve="brainpoolP256r1",
    )
    result = fit_profile(store, [run], name="bp", allow_emulated=True, model_trials=200)
    ecdsa = result.profile.crypto["ecdsa_sign"].params["mean_ms"]
    assert abs(ecdsa - 429.0) < 0.03 * 429.0
    assert "curve factor 1.3" in result.toml
    assert abs(result.comparisons["sign_only"].rel_diff("mean_ms")) < 0.03


def test_base_link_slower_than_the_card_is_a_note(se_runs: tuple[ResultsStore, int, int]) -> None:
    """A modem link (paper-sim) cannot explain a fast I2C element: said, not hidden."""
    store, sign_only, total = se_runs
    result = fit_profile(
        store,
        [sign_only, total],
        name="mismatch",
        base_profile="paper-sim",
        allow_emulated=True,
        model_trials=100,
    )
    assert any("faster link" in note for note in result.notes)
    assert "faster link" in result.toml
    assert result.comparisons["total"].rel_diff("mean_ms") > 0.2


@pytest.mark.softhsm
def test_pkcs11_run_is_fitted_without_the_emulated_flag(softhsm, tmp_path: Path) -> None:
    """A real PKCS#11 token (SoftHSM2) is not emulated: accepted, with the phase mapping noted."""
    store = ResultsStore(tmp_path / "results.sqlite")
    run = runner_run(store, softhsm.uri(), Mode.TOTAL, 20, pin_provider=lambda: Pin(softhsm.pin))
    assert not store.get_run(run).emulated
    result = fit_profile(store, [run], name="softhsm", base_profile="discrete-se", model_trials=50)
    assert any("C_OpenSession + C_Login" in note for note in result.notes)
    assert load_profile(Path(result.save(tmp_path / "softhsm.toml"))).name == "softhsm"


# ------------------------------------------------------------------------------- refusals


def test_emulated_run_is_refused_without_the_flag(se_runs: tuple[ResultsStore, int, int]) -> None:
    store, sign_only, _ = se_runs
    with pytest.raises(EmulatedRunError) as info:
        fit_profile(store, [sign_only], name="x", base_profile="discrete-se")
    assert "emulat" in info.value.problem and "allow_emulated" in info.value.fix


def test_too_few_samples(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results.sqlite")
    run = modelled_run(store, PAPER_SPEC, "sign_only", 19, 1)
    with pytest.raises(TooFewSamplesError) as info:
        fit_profile(store, [run], name="x", allow_emulated=True)
    assert "19 trials" in info.value.problem and "-n 100" in info.value.fix


def test_run_without_phase_times(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results.sqlite")
    run = store.create_run(
        experiment="sign",
        mode="sign_only",
        n_planned=20,
        warmup=0,
        data_len=32,
        hash_on="host",
        threshold_ms=1000.0,
        token={"kind": "pkcs11", "uri": "pkcs11:token=sim", "emulated": False},
        versions={},
    )
    store.add_samples(run, [(i, 476_000_000, {}) for i in range(20)])
    store.finish_run(run, "complete")
    with pytest.raises(MissingPhasesError) as info:
        fit_profile(store, [run], name="x")
    assert "sign_init" in info.value.problem and info.value.fix


def test_software_run_is_not_a_card(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results.sqlite")
    run = runner_run(store, "software:p256", Mode.LOCAL_SW, 20)
    with pytest.raises(NotACardRunError) as info:
        fit_profile(store, [run], name="x")
    assert "local_sw" in info.value.problem


def test_runs_of_different_cards_are_not_pooled(se_runs: tuple[ResultsStore, int, int]) -> None:
    store, _, total = se_runs
    other = modelled_run(store, PAPER_SPEC, "sign_only", 20, 1)
    with pytest.raises(MixedRunsError):
        fit_profile(store, [total, other], name="x", allow_emulated=True)


def test_unknown_run_empty_list_and_bad_name(se_runs: tuple[ResultsStore, int, int]) -> None:
    store, sign_only, _ = se_runs
    with pytest.raises(StoreError):
        fit_profile(store, [9999], name="x")
    with pytest.raises(FitError):
        fit_profile(store, [], name="x")
    with pytest.raises(FitError):
        fit_profile(store, [sign_only], name="../x", allow_emulated=True)
