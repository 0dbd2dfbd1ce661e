"""JSON and CSV export of stored runs: the one writer the CLI and the console both use.

JSON holds the run's metadata, its summary statistics and every sample; CSV holds one row per
sample (milliseconds) for spreadsheets and plotting tools. Neither ever contains a PIN or a key:
the store never had them.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, TextIO

from drivers.bench.stats import StreamingStats
from drivers.bench.store import ResultsStore, RunRecord
from drivers.tokens.base import PHASES

CSV_COLUMNS = ("run_id", "idx", "total_ms", *(f"{phase}_ms" for phase in PHASES))


def run_stats(store: ResultsStore, record: RunRecord) -> StreamingStats:
    """Statistics of a stored run, recomputed from its samples (any phase names).

    Every sample is kept, so :meth:`StreamingStats.final_snapshot` gives exact percentiles:
    use it for figures; ``histogram()`` for the bins.
    """
    stats = StreamingStats(record.threshold_ms, phases=None, keep_samples=True)
    for _, total, phases in store.samples(record.id):
        # counts (``n_sign``, ``n_resumed``) are not times: the live run leaves them out too
        stats.add(total, {name: ns for name, ns in phases.items() if not is_count(name)})
    return stats


def is_count(name: str) -> bool:
    """A per-trial count (``n_sign``: token signatures, ``n_resumed``: 1 if resumed)."""
    return name.startswith("n_")


def run_document(store: ResultsStore, run_id: int) -> dict[str, Any]:
    """The whole run as one JSON-ready dict: ``run``, ``summary``, ``samples``."""
    record = store.get_run(run_id)
    samples = [
        {
            "idx": idx,
            "total_ms": total / 1e6,
            **{
                (phase if phase.startswith("n_") else f"{phase}_ms"): (
                    ns if phase.startswith("n_") else ns / 1e6
                )
                for phase, ns in phases.items()
            },
        }
        for idx, total, phases in store.samples(run_id)
    ]
    return {
        "run": record.as_dict(),
        "summary": run_stats(store, record).final_snapshot().as_dict(),
        "samples": samples,
    }


def write_json(store: ResultsStore, run_id: int, out: TextIO) -> None:
    json.dump(run_document(store, run_id), out, indent=2, allow_nan=False, default=str)
    out.write("\n")


def _columns(samples: list[tuple[int, int, dict[str, int]]]) -> list[str]:
    """Signing runs: the five token phases (a stable schema, :data:`CSV_COLUMNS`). Other
    experiments: the token phases present, then their own figures as they appear."""
    others = [n for _, _, phases in samples for n in phases if n not in PHASES]
    if not others:
        return list(PHASES)
    seen = {name for _, _, phases in samples for name in phases}
    return [p for p in PHASES if p in seen] + list(dict.fromkeys(others))


def write_csv(store: ResultsStore, run_id: int, out: TextIO) -> None:
    """One row per sample: times in ms (``<phase>_ms``), counts as integers (``n_sign``)."""
    store.get_run(run_id)  # a clear error for an unknown run before the header is written
    samples = list(store.samples(run_id))
    columns = _columns(samples)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["run_id", "idx", "total_ms", *(c if c.startswith("n_") else f"{c}_ms" for c in columns)]
    )
    for idx, total, phases in samples:
        cells = []
        for column in columns:
            value = phases.get(column)
            if value is None:
                cells.append("")
            elif column.startswith("n_"):
                cells.append(str(value))
            else:
                cells.append(f"{value / 1e6:.6f}")
        writer.writerow([run_id, idx, f"{total / 1e6:.6f}", *cells])


def export_text(store: ResultsStore, run_id: int, fmt: str) -> str:
    buffer = io.StringIO()
    (write_json if fmt == "json" else write_csv)(store, run_id, buffer)
    return buffer.getvalue()
