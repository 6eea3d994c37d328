"""Helpers of the sweep tests: sweep files over the CVRL quickstart, a stub run function."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from ssvrl.sweep.execute import RunContext

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "experiments" / "cvrl" / "quickstart.yaml"


def write_sweep(tmp_path: Path, **body: Any) -> Path:
    """A sweep file over the CVRL quickstart, writing into ``tmp_path/out``."""
    data = {"base": str(BASE), "out_dir": str(tmp_path / "out"), **body}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def temperature_sweep(tmp_path: Path, seeds: tuple[int, ...] = (0, 1)) -> Path:
    """objective.temperature 0.1 / 0.5 x ``seeds``: runs in that order within each seed."""
    return write_sweep(tmp_path, grid={"objective.temperature": [0.1, 0.5]}, seeds=list(seeds))


def stub(ctx: RunContext) -> dict[str, Any]:
    """Known metrics: acc = 100 * temperature + seed; temperature 0.5 fails."""
    temperature, seed = ctx.cfg.objective.temperature, ctx.cfg.seed
    if temperature == 0.5:
        raise RuntimeError(f"boom at seed {seed}")
    return {"metrics": {"acc": 100 * temperature + seed}}


def dead_pid() -> int:
    """The pid of a process that has ended (not reused in the milliseconds of a test)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
