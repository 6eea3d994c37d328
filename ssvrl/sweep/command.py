"""``ssvrl sweep FILE [--dry-run | --report | --slurm | --run-index I] [--parallel N]``.

Every mode but ``--report`` first expands the file and validates every run's config, so a
typo fails the whole sweep before anything starts (exit code 2).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ssvrl.sweep.expand import describe
from ssvrl.sweep.plan import Plan, make_plan, prepare_folders, stale_runs, states
from ssvrl.sweep.spec import SweepError, load_sweep
from ssvrl.sweep.status import effective_state, sweep_lock

__all__ = ["add_arguments", "format_runs", "run_command"]

log = logging.getLogger("ssvrl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sweep`` subcommand's arguments."""
    parser.add_argument("file", help="a sweep YAML, e.g. experiments/sweeps/quickstart.yaml")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="validate every run and list them with their status; run nothing")
    mode.add_argument("--report", action="store_true",
                      help="rebuild results.csv / results.md / plots from the run folders")
    mode.add_argument("--slurm", action="store_true",
                      help="write an sbatch job array (one task per run not done); submit it "
                      "when sbatch exists")
    mode.add_argument("--run-index", type=int, default=None, metavar="I",
                      help="run only run I, in this process (what each child / array task does)")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="runs at a time: one GPU each when there are GPUs, else CPU "
                        "processes; with --slurm, the array's throttle")


def run_command(args: argparse.Namespace) -> int:
    """Dispatch one ``ssvrl sweep`` invocation; returns the exit code."""
    if args.parallel < 1:
        raise SweepError(f"--parallel must be >= 1, got {args.parallel}")
    if args.report:
        spec = load_sweep(args.file)
        return _report(spec.sweep_dir)
    plan = make_plan(args.file)
    if args.run_index is not None:
        from ssvrl.sweep.execute import execute_run

        return execute_run(plan, args.run_index)
    if args.dry_run:
        print(format_runs(plan))
        return 0
    prepare_folders(plan)
    if args.slurm:
        return _slurm(plan, args.parallel)
    from ssvrl.sweep.runner import run_sweep, visible_gpus

    gpus = visible_gpus() if args.parallel > 1 else []
    wide = [r.name for r, c in zip(plan.runs, plan.configs, strict=True) if c.trainer.devices > 1]
    if gpus and wide:
        raise SweepError(f"--parallel gives each run one GPU, but {wide[0]} asks for "
                         "trainer.devices > 1; run the sweep without --parallel")
    try:
        with sweep_lock(plan.sweep_dir):
            code = run_sweep(plan, parallel=args.parallel, gpus=gpus)
    except RuntimeError as err:  # the lock: another sweep process runs these runs
        raise SweepError(str(err)) from None
    return max(code, _report(plan.sweep_dir))


def format_runs(plan: Plan) -> str:
    """The dry-run table: index, run name, swept values, seed, status."""
    stale = stale_runs(plan)
    rows = [("#", "run", "swept values", "seed", "status")]
    for run, status in zip(plan.runs, states(plan), strict=True):
        state = "config changed" if run.name in stale else effective_state(status)
        if state == "running":
            state += f" (pid {status.get('pid')} on {status.get('host')})"
        seed = "base" if run.seed is None else str(run.seed)
        rows.append((str(run.index), run.name, describe(run, plan.spec.axes), seed, state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    evaluate = "base config's" if plan.spec.evaluate is None else list(plan.spec.evaluate) or "none"
    lines.append(f"\n{len(plan.runs)} runs, all configs valid; folder {plan.sweep_dir}; "
                 f"evaluate: {evaluate}")
    return "\n".join(lines)


def _slurm(plan: Plan, parallel: int) -> int:
    from ssvrl.sweep.slurm import submit, write_sbatch

    todo = [r.index for r, s in zip(plan.runs, states(plan), strict=True)
            if effective_state(s) != "done"]
    if not todo:
        print("every run is done")
        return _report(plan.sweep_dir)
    script = write_sbatch(plan, todo, parallel if parallel > 1 else None)
    print(f"wrote {script} ({len(todo)} array tasks); afterwards: ssvrl sweep "
          f"{plan.spec.path} --report")
    return submit(script)


def _report(sweep_dir: Path) -> int:
    """Write the results tables and plots; print the Markdown table."""
    from ssvrl.sweep.report import write_report

    if not sweep_dir.is_dir():
        raise SweepError(f"no sweep folder {sweep_dir}: nothing has run yet")
    try:
        paths = write_report(sweep_dir)
    except Exception as err:  # noqa: BLE001  (a plotting problem must not hide run results)
        log.exception("could not write the sweep report: %s", err)
        return 1
    print("\n" + paths[1].read_text(encoding="utf-8"))
    print(f"wrote {paths[0]}, {paths[1]}" + (f" and {len(paths) - 2} plots in "
                                             f"{paths[2].parent}" if len(paths) > 2 else ""))
    return 0
