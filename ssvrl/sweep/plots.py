"""One PNG per (metric, swept key): the metric's mean over seeds against the key's values,
with the standard deviation as error bars and one line per combination of the other keys."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ssvrl.sweep.report import Row

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_metrics"]


def plot_metrics(rows: list[Row], keys: list[str], short: dict[str, str], metrics: list[str],
                 out: Path) -> list[Path]:
    """Write ``out/<metric>__<key>.png`` for every metric and swept key; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric in metrics:
        for key in keys:
            fig, ax = plt.subplots(figsize=(5.5, 3.8))
            _draw(ax, rows, key, [k for k in keys if k != key], short, metric)
            ax.set_xlabel(short.get(key, key))
            ax.set_ylabel(metric)
            ax.set_title(f"{metric} vs {short.get(key, key)} (mean ± std over seeds)", fontsize=9)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            path = out / f"{_safe(metric)}__{_safe(short.get(key, key))}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            paths.append(path)
    return paths


def _draw(ax: Axes, rows: list[Row], key: str, others: list[str], short: dict[str, str],
          metric: str) -> None:
    """The key's values in sweep order on a categorical x axis; a series per other labels."""
    xs = list(dict.fromkeys(row.labels[key] for row in rows))
    series: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        series.setdefault(tuple(row.labels[k] for k in others), []).append(row)
    shift = 0.06 * (len(series) > 1)  # nudge series apart so their error bars stay readable
    for n, (labels, members) in enumerate(series.items()):
        points = [(xs.index(r.labels[key]), r.stats[metric]) for r in members if metric in r.stats]
        if not points:
            continue
        offset = (n - (len(series) - 1) / 2) * shift
        name = ", ".join(f"{short.get(k, k)}={v}" for k, v in zip(others, labels, strict=True))
        ax.errorbar(
            [x + offset for x, _ in points],
            [s[0] for _, s in points],
            yerr=[0.0 if math.isnan(s[1]) else s[1] for _, s in points],
            marker="o", capsize=4, label=name or None,
        )
    ax.set_xticks(range(len(xs)), [x if len(x) <= 18 else x[:17] + "…" for x in xs])
    ax.set_xlim(-0.5, len(xs) - 0.5)
    if len(series) > 1:
        ax.legend(fontsize=7)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.@+-]+", "_", text).strip("_") or "metric"
