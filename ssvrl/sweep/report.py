"""The sweep's results table, rebuilt from the run folders alone (``--report``).

One row per configuration (the swept values without the seed): for every metric found in
the runs' ``results.json``, the mean and the sample standard deviation over the seeds that are
done, the number of those seeds, and the states of the configuration's runs. Written as
``results.csv`` (full precision) and ``results.md``; :mod:`ssvrl.sweep.plots` draws each metric.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssvrl.sweep.jsonio import is_number, read_json
from ssvrl.sweep.status import effective_state, read_status

__all__ = ["Row", "aggregate", "collect", "format_markdown", "write_report"]


@dataclass
class Record:
    """One run folder: its labels (swept key -> label), seed, state and metrics."""

    name: str
    labels: dict[str, str]
    seed: int | None
    state: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Row:
    """One configuration: ``stats[metric] = (mean, std or nan, n)`` over its done seeds."""

    labels: dict[str, str]
    stats: dict[str, tuple[float, float, int]]
    seeds_done: int
    states: dict[str, int]

    @property
    def status(self) -> str:
        if set(self.states) == {"done"}:
            return "done"
        return ", ".join(f"{n} {state}" for state, n in sorted(self.states.items()))


def collect(sweep_dir: Path) -> tuple[list[str], dict[str, str], list[Record]]:
    """The swept keys, their short names and a record per run, from ``sweep.json`` and the
    run folders' ``status.json`` / ``results.json`` (folders not in ``sweep.json`` are left
    out: runs of an earlier version of the sweep file)."""
    summary = read_json(sweep_dir / "sweep.json") or {}
    names = summary.get("runs") or sorted(p.parent.name for p in sweep_dir.glob("*/status.json"))
    records = []
    for name in names:
        status = read_status(sweep_dir / name)
        results = read_json(sweep_dir / name / "results.json") or {}
        state = effective_state(status)
        metrics = results.get("metrics") if state == "done" else None
        records.append(Record(
            name=name,
            labels=dict(status.get("labels") or results.get("labels") or {}),
            seed=status.get("seed"),
            state=state,
            metrics={k: float(v) for k, v in (metrics or {}).items() if is_number(v)},
        ))
    keys = list(summary.get("keys") or (records[0].labels if records else []))
    short = dict(summary.get("short_keys") or {k: k for k in keys})
    return keys, short, records


def aggregate(records: list[Record], keys: list[str]) -> tuple[list[Row], list[str]]:
    """Rows in first-seen order and the metric names (sorted: evaluators group together)."""
    groups: dict[tuple[str, ...], list[Record]] = {}
    for record in records:
        groups.setdefault(tuple(record.labels.get(k, "") for k in keys), []).append(record)
    metrics = sorted({m for r in records for m in r.metrics}, key=_natural)
    rows = []
    for labels, members in groups.items():
        stats = {}
        for metric in metrics:
            values = [r.metrics[metric] for r in members if metric in r.metrics]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else math.nan
                stats[metric] = (statistics.fmean(values), std, len(values))
        rows.append(Row(
            labels=dict(zip(keys, labels, strict=True)),
            stats=stats,
            seeds_done=sum(r.state == "done" for r in members),
            states=dict(Counter(r.state for r in members)),
        ))
    return rows, metrics


def write_csv(rows: list[Row], keys: list[str], metrics: list[str], path: Path) -> None:
    """Swept values, then ``<metric> mean`` / ``<metric> std`` per metric, seeds, status."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*keys, *(f"{m} {s}" for m in metrics for s in ("mean", "std")),
                         "seeds_done", "status"])
        for row in rows:
            cells: list[Any] = [row.labels[k] for k in keys]
            for metric in metrics:
                mean, std, _ = row.stats.get(metric, (math.nan, math.nan, 0))
                cells += [_plain(mean), _plain(std)]
            writer.writerow([*cells, row.seeds_done, row.status])


def format_markdown(rows: list[Row], keys: list[str], short: dict[str, str],
                    metrics: list[str]) -> str:
    """A Markdown table: ``mean ± std`` per metric (``-`` for a single seed's std)."""
    head = [*(short.get(k, k) for k in keys), *metrics, "seeds", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.labels[k].replace("|", "\\|") for k in keys]  # a '|' would split the cell
        for metric in metrics:
            mean, std, _ = row.stats.get(metric, (math.nan, math.nan, 0))
            cells.append("" if math.isnan(mean) else
                         f"{mean:.4g} ± {'-' if math.isnan(std) else f'{std:.2g}'}")
        cells += [str(row.seeds_done), row.status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: Path, plots: bool = True) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and (``plots``) the PNGs; returns their paths."""
    keys, short, records = collect(sweep_dir)
    rows, metrics = aggregate(records, keys)
    csv_path, md_path = sweep_dir / "results.csv", sweep_dir / "results.md"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, keys, metrics, csv_path)
    md_path.write_text(format_markdown(rows, keys, short, metrics), encoding="utf-8")
    written = [csv_path, md_path]
    if plots and keys and metrics:
        from ssvrl.sweep.plots import plot_metrics

        written += plot_metrics(rows, keys, short, metrics, sweep_dir / "plots")
    return written


def _natural(name: str) -> list[Any]:
    """Sort key reading digit runs as numbers: ``R@5`` before ``R@10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _plain(value: float) -> str:
    return "" if math.isnan(value) else repr(value)
