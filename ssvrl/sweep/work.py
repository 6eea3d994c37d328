"""The real work of one sweep run: pretrain (resuming when it can), then probe the result.

Resume: a run interrupted during pretraining continues from the newest ``last.ckpt`` of its
``version_N/`` folders (``fit(..., ckpt_path=...)``, a new ``version_N+1/``), exactly where it
stopped (``ssvrl.engine.resume``: also mid-epoch, from a SIGTERM or step checkpoint); a run
whose pretraining had finished (``pretrained`` in its status) goes straight to the probe.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssvrl.engine.resume import latest_checkpoint
from ssvrl.sweep.execute import RunContext
from ssvrl.sweep.jsonio import is_number, read_json

__all__ = ["latest_checkpoint", "pretrain_and_probe", "pretrain_metrics", "probe_metrics"]

log = logging.getLogger("ssvrl")
PRETRAIN_COLUMNS = {"train/loss": "pretrain/loss", "val/online_top1": "pretrain/online_top1"}


def pretrain_and_probe(ctx: RunContext) -> dict[str, Any]:
    """Pretrain ``ctx.cfg`` into ``ctx.folder`` and probe its last checkpoint."""
    from ssvrl.engine.build import fit

    done = ctx.previous.get("pretrain_dir") if ctx.previous.get("pretrained") else None
    if done and (Path(done) / "checkpoints" / "last.ckpt").is_file():
        run_dir, ckpt = Path(done), Path(done) / "checkpoints" / "last.ckpt"
        log.info("pretraining already finished in %s: probing only", run_dir)
    else:
        resume = latest_checkpoint(ctx.folder)
        if resume is not None:
            log.info("resuming pretraining from %s", resume)
        ctx.note(resumed_from=None if resume is None else str(resume))
        run_dir = fit(ctx.cfg, ckpt_path=None if resume is None else str(resume))
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if not ckpt.is_file() and resume is not None:  # resumed at the end: nothing to redo
            ckpt = resume
        run_dir = ckpt.parent.parent
        ctx.note(pretrained=True, pretrain_dir=str(run_dir))
    metrics = pretrain_metrics(run_dir)
    results: dict[str, Any] = {"pretrain_dir": str(run_dir), "checkpoint": str(ckpt)}
    if ctx.evaluate:
        from ssvrl.engine.evaluate import run_probe

        out = ctx.folder / "probe"
        returned = run_probe(ctx.cfg, str(ckpt), out)
        written = read_json(out / "probe.json")
        metrics.update(probe_metrics(written if written is not None else returned))
        results["probe"] = str(out / "probe.json")
    return {"metrics": metrics, **results}


def probe_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """``{"linear/top1": 57.4, "knn/top1": ..., "retrieval/R@1": ...}`` from a probe result.

    Read defensively: ``metrics`` as ``{evaluator: {name: number}}`` (or ``{name: number}``);
    without it, the top-level ``top1`` / ``top5`` of the linear probe.
    """
    found: dict[str, float] = {}
    nested = result.get("metrics")
    if isinstance(nested, Mapping):
        for evaluator, values in nested.items():
            if isinstance(values, Mapping):
                found.update({f"{evaluator}/{k}": float(v) for k, v in values.items()
                              if is_number(v)})
            elif is_number(values):
                found[str(evaluator)] = float(values)
    if not found:
        found = {f"linear/{k}": float(result[k]) for k in ("top1", "top5")
                 if is_number(result.get(k))}
    return found


def pretrain_metrics(run_dir: Path) -> dict[str, float]:
    """The last logged value of the pretraining columns in ``PRETRAIN_COLUMNS`` (CSV logger)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return {}
    last: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for column, name in PRETRAIN_COLUMNS.items():
                text = row.get(column) or ""
                try:
                    last[name] = float(text)
                except ValueError:
                    continue
    return last
