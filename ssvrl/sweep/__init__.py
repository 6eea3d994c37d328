"""Ablation sweeps from YAML: expand a sweep file, run it, collect a results table and plots.

``ssvrl sweep experiments/sweeps/quickstart.yaml [--dry-run | --report | --slurm]`` (see
:mod:`ssvrl.sweep.spec` for the file, :mod:`ssvrl.sweep.runner` for how runs are started).
"""

from ssvrl.sweep.expand import Run, expand
from ssvrl.sweep.plan import Plan, make_plan
from ssvrl.sweep.report import write_report
from ssvrl.sweep.runner import run_sweep
from ssvrl.sweep.spec import SweepError, SweepSpec, load_sweep

__all__ = [
    "Plan", "Run", "SweepError", "SweepSpec", "expand", "load_sweep", "make_plan", "run_sweep",
    "write_report",
]
