"""``ssvrl sweep FILE --slurm``: an sbatch job array, one array task per run not yet done.

Each task runs ``python -m ssvrl sweep FILE --run-index $SLURM_ARRAY_TASK_ID`` (the same
child a local sweep starts), so the same sweep file, run folders and resume rules hold. The
script is submitted when ``sbatch`` is on the PATH, else its path is printed. ``--parallel N``
throttles the array to N tasks at a time (``--array=...%N``).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ssvrl.sweep.plan import Plan

__all__ = ["array_spec", "submit", "write_sbatch"]


def array_spec(indices: Sequence[int], parallel: int | None = None) -> str:
    """``0-3,6,8-9`` (runs of consecutive indices as ranges), ``%N`` with a throttle."""
    parts: list[str] = []
    ordered = sorted(indices)
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    throttle = f"%{parallel}" if parallel and parallel > 0 else ""
    return ",".join(parts) + throttle


def write_sbatch(plan: Plan, indices: Sequence[int], parallel: int | None = None) -> Path:
    """Write ``<sweep dir>/slurm/sweep.sbatch`` for the runs ``indices``; returns its path."""
    folder = (plan.sweep_dir / "slurm").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    options = {
        "job-name": f"ssvrl-{plan.spec.name}",
        "array": array_spec(indices, parallel),
        "output": str(folder / "%A_%a.out"),
        **{str(k): str(v) for k, v in plan.spec.slurm.options.items()},
    }
    command = [sys.executable, "-m", "ssvrl", "sweep", str(plan.spec.path),
               "--run-index", "$SLURM_ARRAY_TASK_ID"]
    lines = [
        "#!/bin/bash",
        f"# ssvrl sweep {plan.spec.name}: {len(indices)} of {len(plan.runs)} runs, one per task",
        *(f"#SBATCH --{key}={value}" for key, value in options.items()),
        "set -euo pipefail",
        f"cd {shlex.quote(str(Path.cwd()))}",
        *plan.spec.slurm.setup,
        " ".join(shlex.quote(c) if not c.startswith("$") else c for c in command),
        "",
    ]
    path = folder / "sweep.sbatch"
    path.write_text("\n".join(lines), encoding="utf-8")
    path.chmod(0o755)
    return path


def submit(script: Path, echo: Callable[[str], None] = print) -> int:
    """``sbatch script`` when sbatch exists (its exit code), else print how to submit (0)."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        echo(f"sbatch not found; submit with: sbatch {script}")
        return 0
    done = subprocess.run([sbatch, str(script)], capture_output=True, text=True, check=False)
    echo((done.stdout + done.stderr).strip())
    return done.returncode
