"""The words of a profile fit: the TOML header, per-entry derivations and notes.

A fitted profile says in its comments how each number came about, so a reader can check the
fit without rerunning it. :mod:`drivers.cards.fit` computes; this module only phrases.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from drivers.bench.store import RunRecord
from drivers.cards.emulator.profile import CardProfile
from drivers.cards.fit_stats import TAIL_K, ModeComparison, PhaseMoments, Tail


def run_notes(runs: Sequence[RunRecord]) -> list[str]:
    """What the reader of a fit must know about its runs (incomplete, emulated, PKCS#11)."""
    notes: list[str] = []
    for run in runs:
        if run.status != "complete":
            notes.append(f"run {run.id} is {run.status} ({run.reason}); its trials are used")
        if run.emulated:
            notes.append(f"run {run.id} is emulated ({run.token_uri}): a test of the fit only")
    if any(run.token_kind == "pkcs11" for run in runs):
        notes.append(
            "PKCS#11 run: C_OpenSession + C_Login are taken as open (MANAGE CHANNEL + SELECT), "
            "C_FindObjects as find (GET DATA), C_SignInit as COMPUTE SIGNATURE INIT, C_Sign as "
            "UPDATE (+ GET RESPONSE); the vendor library's host time becomes card time"
        )
    return notes


def unmodelled_tail_note(tail: Tail, mode: str, phase: str, source: dict[str, str]) -> str:
    return (
        f"{tail.count} tail trial(s) of the {mode} run(s) lie in {phase}, which "
        f"the {source.get(phase)} run(s) fit; that tail is not modelled"
    )


def slow_link_note(phase: str, fixed_mean: float, run_mean: float) -> str:
    return (
        f"{phase}: the base profile's link and kept commands alone ({fixed_mean:.3f}"
        f" ms) take longer than the run's {phase} ({run_mean:.3f} ms); its card time "
        f"is set to 0. Choose a base profile with a faster link (e.g. discrete-se)"
    )


def steady_run_note(phase: str, run_var: float, fixed_var: float) -> str:
    return (
        f"{phase}: the run varies less (σ {math.sqrt(run_var):.3f} ms) than the base "
        f"link alone (σ {math.sqrt(fixed_var):.3f} ms); its card time gets σ 0"
    )


def component_note(
    phase: str,
    mode: str,
    run_ids: str,
    moments: PhaseMoments,
    *,
    component: str,
    share: float,
    var_share: float,
    apdus: int,
    curve_factor: tuple[float, str] | None,
) -> str:
    """How one component's distribution was derived (the comment above its TOML line)."""
    m = moments
    return (
        f"{phase} phase of run(s) {run_ids} ({mode}, {m.body_trials} body "
        f"trials): mean {m.run_mean:.3f} ms, σ {math.sqrt(m.run_var):.3f} ms; base "
        f"link and kept commands {m.fixed_mean:.3f} ms, σ {math.sqrt(m.fixed_var):.3f}"
        f" ms; card time {m.card_mean:.3f} ms, σ {math.sqrt(m.card_var):.3f} ms; "
        f"{share:.1%} of the mean and {var_share:.1%} of the variance to {component}"
        + (f" ({apdus} APDUs)" if apdus > 1 else "")
        + (
            f", ÷ curve factor {curve_factor[0]:g} ({curve_factor[1]})"
            if curve_factor is not None
            else ""
        )
    )


def tail_note(phase: str, tail: Tail, n: int) -> str:
    return (
        f"tail: {tail.count} of {n} trials above median + {TAIL_K:g}·"
        f"1.4826·MAD of the totals had most of their excess in {phase}; "
        f"p = {tail.count}/{n}, excess over the {phase} body median "
        + ", ".join(f"{e:.1f}" for e in tail.excess_ms[:8])
        + (" ..." if tail.count > 8 else "")
        + " ms"
    )


def description(run_ids: Sequence[int], first: RunRecord, base: CardProfile) -> str:
    """The fitted profile's one-line ``description``."""
    return (
        f"fitted to run(s) {', '.join(str(i) for i in run_ids)} of "
        f"{first.token.get('label') or first.token_uri}, link of {base.name}"
    )


def header(name: str, base: CardProfile, runs: Sequence[RunRecord], source: dict[str, str]) -> str:
    """The profile's opening comment: runs, fitted phases, what was kept, the method."""
    lines = [
        f"SAFE Lab card profile {name!r}, fitted by `safelab card fit` "
        f"on {time.strftime('%Y-%m-%d %H:%M')}.",
        "Runs:",
    ]
    for run in runs:
        lines.append(
            f"- run {run.id}: {run.mode}, n = {run.n_samples}, hash on {run.hash_on}, "
            f"{run.data_len} B, token {run.token_kind} {run.token_uri}"
            + (" (emulated)" if run.emulated else "")
        )
    fitted = ", ".join(f"{phase} from {mode}" for phase, mode in source.items())
    lines += [
        f"Fitted phases: {fitted}.",
        f"Kept from base profile {base.name!r} ({base.source}): the link ([transport]), GET "
        "RESPONSE and every command of an unfitted phase, on-card hashing, curve factors, other "
        "crypto operations and the quirks.",
        "Method (drivers/cards/fit.py): per phase, card time = run mean - modelled time of the "
        "kept parts for the same APDUs (base profile with the fitted parts at 0); variance "
        "likewise; split over the phase's commands (and ECDSA for sign) in the base profile's "
        f"proportions, as normals. Tail: trials above median + {TAIL_K:g} robust sigma "
        "(1.4826 MAD) of the totals, put on the slowest command of the phase that carried the "
        "excess. Login (C_Login, VERIFY PIN) is counted in open.",
    ]
    return "\n".join(lines)


def comparison_text(comparisons: dict[str, ModeComparison], trials: int, seed: int) -> str:
    """The run-versus-model table, one line per mode and side."""
    lines = [f"Run vs this profile (predict.modelled_trials, {trials} trials, seed {seed}), ms:"]
    for comparison in comparisons.values():
        for label, stats in (("run", comparison.run), ("model", comparison.model)):
            lines.append(
                f"  {comparison.mode:9} {label:5} n {stats.n:<5} mean {stats.mean_ms:8.2f} "
                f"σ {stats.stdev_ms:7.2f} P50 {stats.p50_ms:8.2f} P90 {stats.p90_ms:8.2f} "
                f"P99 {stats.p99_ms:8.2f} >1 s {stats.over_1s:5.1%}"
            )
    return "\n".join(lines)
