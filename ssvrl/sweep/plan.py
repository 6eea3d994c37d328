"""A sweep ready to run: the spec, its runs, their validated configs and their folders.

``<out_dir>/<sweep name>/`` holds ``sweep.json`` (the swept keys and run names, which the
report reads), the results tables and plots, and one folder per run with ``config.yaml``,
``status.json``, ``log.txt`` (the run's output), the pretraining run (``version_N/``), the
probe (``probe/probe.json``), ``results.json`` and, after a failure, ``error.txt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssvrl.config.loader import save_config
from ssvrl.sweep.configs import config_changes, validate_runs
from ssvrl.sweep.expand import Run, expand, short_keys
from ssvrl.sweep.spec import SweepError, SweepSpec, load_sweep
from ssvrl.sweep.status import read_status, write_status

__all__ = ["Plan", "make_plan", "prepare_folders", "stale_runs"]


@dataclass(frozen=True)
class Plan:
    """``configs[i]`` is the validated config of ``runs[i]`` (empty when not validated)."""

    spec: SweepSpec
    runs: tuple[Run, ...]
    configs: tuple[Any, ...]

    @property
    def sweep_dir(self) -> Path:
        return self.spec.sweep_dir

    def folder(self, run: Run) -> Path:
        return self.sweep_dir / run.name


def make_plan(path: str | Path, validate: bool = True) -> Plan:
    """Load the sweep file, expand it and (``validate``) check every run's config."""
    spec = load_sweep(path)
    runs = expand(spec)
    configs = validate_runs(spec, runs) if validate else []
    return Plan(spec, tuple(runs), tuple(configs))


def stale_runs(plan: Plan) -> dict[str, list[str]]:
    """Runs whose folder already holds a different config (the sweep file or the base changed
    since they ran): name -> the changed leaves."""
    stale = {}
    for run, cfg in zip(plan.runs, plan.configs, strict=True):
        saved = plan.folder(run) / "config.yaml"
        if saved.is_file():
            changes = config_changes(cfg, saved)
            if changes:
                stale[run.name] = changes
    return stale


def prepare_folders(plan: Plan) -> None:
    """Write ``sweep.json`` and, for new runs, ``config.yaml`` and a pending ``status.json``.
    Refuses to mix results of different configs under one run name."""
    stale = stale_runs(plan)
    if stale:
        name, changes = next(iter(stale.items()))
        raise SweepError(
            f"{len(stale)} run folder(s) hold a different config than the sweep file now gives, "
            f"e.g. {name}: {'; '.join(changes[:3])}. Give the sweep a new 'name:' or delete "
            f"{plan.sweep_dir / name}",
            source=f"sweep {plan.spec.path}",
        )
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    keys = [a.key for a in plan.spec.axes]
    summary = {
        "name": plan.spec.name,
        "file": str(plan.spec.path),
        "base": None if plan.spec.base is None else str(plan.spec.base),
        "keys": keys,
        "short_keys": short_keys(keys),
        "seeds": None if plan.spec.seeds is None else list(plan.spec.seeds),
        "runs": [run.name for run in plan.runs],
    }
    (plan.sweep_dir / "sweep.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for run, cfg in zip(plan.runs, plan.configs, strict=True):
        folder = plan.folder(run)
        if not (folder / "config.yaml").is_file():
            save_config(cfg, folder / "config.yaml")
        identity = {"index": run.index, "run": run.name, "labels": run.labels, "seed": run.seed}
        if (folder / "status.json").is_file():
            write_status(folder, **identity)  # the index may move when the file grows
        else:
            write_status(folder, state="pending", **identity)


def states(plan: Plan) -> list[dict[str, Any]]:
    """Every run's status (pending for runs without a folder yet)."""
    return [read_status(plan.folder(run)) for run in plan.runs]
