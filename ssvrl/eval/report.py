"""Probe results for people: one Markdown comparison table, accuracy over pretraining epochs.

A result is the dict ``ssvrl.engine.evaluate.run_probe`` returns (and writes as
``probe.json``): ``metrics[evaluator][metric]``, ``epoch`` (the checkpoint's Lightning
``epoch``; None for a random init), ``protocol`` and ``seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssvrl.eval.retrieval import RECALL_KS

Row = tuple[str, dict[str, Any]]
# (column title, evaluator, metric)
_METRICS = [
    ("linear top-1", "linear", "top1"),
    ("linear top-5", "linear", "top5"),
    ("kNN top-1", "knn", "top1"),
    ("kNN top-5", "knn", "top5"),
    *[(f"R@{k}", "retrieval", f"R@{k}") for k in RECALL_KS],
]
_PLOTTED = (_METRICS[0], _METRICS[2])  # linear top-1, kNN top-1


def _metric(result: dict[str, Any], evaluator: str, metric: str) -> float | None:
    metrics = result.get("metrics") or {}
    value = metrics.get(evaluator, {}).get(metric)
    if value is None and evaluator == "linear":  # results written before the evaluators split
        value = result.get(metric)
    return None if value is None else float(value)


def _protocol(result: dict[str, Any]) -> str:
    p = result.get("protocol", {})
    if "mode" not in p:
        return "-"
    linear = (
        f"online {p.get('online_epochs')} ep"
        if p["mode"] == "online"
        else f"{p.get('classifier')}"
    )
    return f"{linear}, {p.get('feature_norm')}, {p.get('test_clips')}x{p.get('test_crops')}"


def format_table(rows: Sequence[Row]) -> str:
    """One Markdown table comparing probe results; metric columns only for evaluators present
    in some row ("-" where a row lacks one)."""
    cols = [c for c in _METRICS if any(_metric(r, c[1], c[2]) is not None for _, r in rows)]
    head = ["encoder", "epoch", *[c[0] for c in cols], "train / test videos", "protocol", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows:
        epoch = r.get("epoch")
        cells = [name, "-" if epoch is None else str(epoch)]
        for _, evaluator, metric in cols:
            v = _metric(r, evaluator, metric)
            cells.append("-" if v is None else f"{v:.1f}")
        seconds = (r.get("seconds") or {}).get("total")
        cells += [
            f"{r.get('num_train_videos', '-')} / {r.get('num_test_videos', '-')}",
            _protocol(r),
            "-" if seconds is None else f"{seconds:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_over_epochs(rows: Sequence[Row], path: Path) -> Path:
    """Write a PNG of linear and kNN top-1 against the checkpoints' pretraining epoch.

    Rows without an epoch (random init) are drawn as dashed horizontal baselines; teacher
    encoders (``encoder: teacher``, ``ssvrl probe --checkpoints last last:teacher``) get their
    own dotted curves.

    Raises:
        ValueError: no row has an epoch (nothing to plot over).
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dated = sorted(
        ((r["epoch"], r) for _, r in rows if r.get("epoch") is not None), key=lambda er: er[0]
    )
    if not dated:
        raise ValueError("--plot needs checkpoints with an epoch (not only 'random')")
    encoders = sorted({r.get("encoder", "student") for _, r in dated}, key=lambda e: e != "student")
    fig, ax = plt.subplots(figsize=(6, 4))
    for (title, evaluator, metric), style in zip(_PLOTTED, ("o", "s"), strict=True):
        line = None
        for encoder in encoders:
            points = [
                (e, _metric(r, evaluator, metric))
                for e, r in dated
                if r.get("encoder", "student") == encoder
            ]
            points = [(e, v) for e, v in points if v is not None]
            if points:
                teacher = encoder == "teacher"
                line = ax.plot(
                    *zip(*points, strict=True), style + (":" if teacher else "-"),
                    label=f"{title}, teacher" if teacher else title,
                    color=None if line is None else line.get_color(),
                )[0]
        if line is not None:
            for _, r in rows:
                base = _metric(r, evaluator, metric) if r.get("epoch") is None else None
                if base is not None:
                    ax.axhline(base, ls="--", color=line.get_color(), label=f"{title}, random init")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("pretraining epoch of the checkpoint (Lightning 'epoch')")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
