"""Framework overhead: ssvrl's Lightning ``PretrainModule`` vs a minimal hand-written loop.

Both sides train the same model (same config, same initial weights), loss, optimizer and
schedule on the same uint8 batches held in memory, with the same device-side augmentation and
autocast (the minimal loop: ``minimal_loop.py``). The ssvrl side is ``PretrainModule`` in the
``pl.Trainer`` that ``ssvrl fit`` builds (``ssvrl.engine.build.build_trainer``: its loggers,
checkpointing, LR monitor and progress bar as configured), fed by a DataLoader over the same
batches. The two alternate, so load changes on a shared machine hit both:

- ``--interleave steps`` (default on a CPU): inside one ``trainer.fit``, after every ssvrl step
  a callback runs one minimal step; each ssvrl step is timed from the end of that minimal step
  to its own end; wall time and process CPU time (which leaves out waiting for a core: the
  steadier measure on a shared machine, run with ``--threads 1``). CPU only: on a GPU it
  would need syncs that hide the cost of async overhead.
- ``--interleave rounds`` (default on CUDA): ``--rounds`` x (minimal loop, then a fresh
  ``trainer.fit``), each timing ``--steps`` steps after ``--warmup`` untimed ones with a device
  sync only at the ends of the window.

The ratio ssvrl / minimal is the ratio of summed step times; the target (issue #10) is ssvrl
within 5% of the minimal loop. ``--sync-report`` (CUDA only) runs one more round of each with
``torch.cuda.set_sync_debug_mode("warn")`` and lists the source lines that synchronised the
host with the device, per step: the minimal loop's whole run, ssvrl's timed steps only (a
fit's set-up and teardown move the module to the device and back once per fit).

    .venv/bin/python benchmarks/overhead_bench.py [--config experiments/cvrl/quickstart.yaml]
        [--rounds 3] [--steps 20] [--set backbone.name=r3d_18 objective.augment.crop_size=112]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from bench_common import (
    QUICKSTART,
    StepTimes,
    device_overrides,
    load_config,
    machine_line,
    pick_device,
    set_threads,
)
from minimal_loop import MinimalLoop, batch_loader, fresh_parts, make_batches

from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.engine.build import build_trainer, make_run_dir
from ssvrl.engine.module import PretrainModule

Pair = tuple[float, float]  # (minimal seconds, ssvrl seconds)


class Interleave(pl.Callback):
    """One minimal step after each timed ssvrl step (CPU timing, see the module docstring).

    Records wall time and process CPU time (``time.process_time``) of every step on both sides:
    CPU time does not count the time the process waits for a core, so on a shared machine it
    measures the work itself (with one intra-op thread, no thread spins at a barrier)."""

    def __init__(self, minimal: MinimalLoop, batches: list[dict], warmup: int, steps: int):
        self.minimal, self.batches, self.warmup, self.steps = minimal, batches, warmup, steps
        self.wall: list[Pair] = []
        self.cpu: list[Pair] = []
        self._resume: tuple[float, float] | None = None  # (wall, cpu) when a minimal step ended

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        now, done = (time.perf_counter(), time.process_time()), trainer.global_step
        if self._resume is not None:
            self.wall[-1] = (self.wall[-1][0], now[0] - self._resume[0])
            self.cpu[-1] = (self.cpu[-1][0], now[1] - self._resume[1])
        self._resume = None
        if done - self.warmup >= self.steps:
            return
        start = (time.perf_counter(), time.process_time())
        self.minimal.step(self.batches[done % len(self.batches)])
        end = (time.perf_counter(), time.process_time())
        if done >= self.warmup:  # warm-up steps are not timed
            self.wall.append((end[0] - start[0], float("nan")))
            self.cpu.append((end[1] - start[1], float("nan")))
            self._resume = end


def fit_round(
    cfg: Any, module: PretrainModule, batches: list[dict], total: int, device: torch.device,
    callback: pl.Callback,
) -> None:
    """One ``trainer.fit`` of ``total`` steps with ssvrl's own trainer plus ``callback``."""
    run_dir = make_run_dir(cfg)
    trainer = build_trainer(cfg, run_dir, BadVideoLog(run_dir / "bad_videos", 1, 1.0))
    trainer.callbacks.append(callback)
    trainer.fit(module, train_dataloaders=batch_loader(batches, total, device))


def run_rounds(args: argparse.Namespace, cfg: Any, module: PretrainModule,
               minimal: MinimalLoop, batches: list[dict], device: torch.device
               ) -> tuple[list[Pair], list[Pair]]:
    out = []
    for _ in range(args.rounds):
        t_min = minimal.run(batches, args.warmup, args.steps)
        timer = StepTimes(args.warmup, args.steps, device)
        fit_round(cfg, module, batches, args.warmup + args.steps, device, timer)
        out.append((t_min, timer.result()))
    return out, []  # CPU time is not measured on this path (a GPU run's host waits spin)


def run_interleaved(args: argparse.Namespace, cfg: Any, module: PretrainModule,
                    minimal: MinimalLoop, batches: list[dict], device: torch.device
                    ) -> tuple[list[Pair], list[Pair]]:
    wall: list[Pair] = []
    cpu: list[Pair] = []
    for _ in range(args.rounds):
        cb = Interleave(minimal, batches, args.warmup, args.steps)
        fit_round(cfg, module, batches, args.warmup + args.steps, device, cb)
        wall.extend(cb.wall)
        cpu.extend(cb.cpu)
    return wall, cpu


class SyncWindow(pl.Callback):
    """CUDA sync debug mode on from the start of batch ``first`` to the end of batch ``last``:
    the fit's set-up (the module moved to the device) and teardown (moved back to the CPU,
    the final checkpoint) happen once per fit and are not counted as per-step syncs."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == self.first:
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        if batch_idx == self.last:
            torch.cuda.set_sync_debug_mode("default")


def sync_report(fn: Callable[[], object], whole: bool = True) -> Counter[str]:
    """Source lines that synchronised with the CUDA device while ``fn`` ran (``whole``) or
    while ``fn`` itself had the debug mode on (a :class:`SyncWindow` in its fit)."""
    seen: Counter[str] = Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if whole:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            seen[f"{Path(w.filename).name}:{w.lineno}"] += 1
    return seen


def _mean_median(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} / {statistics.median(values):.1f}"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=QUICKSTART)
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    p.add_argument("--input-size", type=int, default=None,
                   help="uint8 frame size H = W (default: largest crop * 8 / 7)")
    p.add_argument("--distinct", type=int, default=4, help="distinct batches, cycled")
    p.add_argument("--interleave", choices=["auto", "steps", "rounds"], default="auto")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    p.add_argument("--device", default="auto")
    p.add_argument("--sync-report", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    mode = args.interleave if args.interleave != "auto" else (
        "rounds" if device.type == "cuda" else "steps"
    )
    if mode == "steps" and device.type == "cuda":
        raise SystemExit("--interleave steps times without device syncs: CPU only; use rounds")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`validation_step` but have no `val_dataloader`.*")
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="ssvrl-overhead-") as tmp:
        overrides = [*args.set, *device_overrides(device), f"out_dir={tmp}",
                     f"trainer.max_steps={total}", "trainer.max_epochs=1000"]
        cfg = load_config(args.config, overrides)
        backbone, objective = fresh_parts(cfg)
        module = PretrainModule(  # as ssvrl.engine.build.build_pretrain makes it
            backbone, objective, cfg.optim, cfg.data.batch_size,
            max_nonfinite_steps=cfg.trainer.max_nonfinite_steps,
            collapse_warn_std=cfg.trainer.collapse_warn_std,
            channels_last=cfg.trainer.channels_last,
        )
        views = objective.views()
        size = args.input_size or -(-max(v.augment.crop_size for v in views) * 8 // 7)
        batches = make_batches(cfg, views, args.distinct, size)
        minimal = MinimalLoop(cfg, device, total)
        run = run_rounds if mode == "rounds" else run_interleaved
        pairs, cpu = run(args, cfg, module, minimal, batches, device)
        reports = None
        if args.sync_report and device.type == "cuda":
            reports = (
                sync_report(lambda: minimal.run(batches, args.warmup, args.steps)),
                sync_report(
                    lambda: fit_round(
                        cfg, module, batches, total, device, SyncWindow(args.warmup, total - 1)
                    ),
                    whole=False,
                ),
            )
    print_table(args, cfg, device, size, mode, pairs, cpu, reports)


def print_table(
    args: argparse.Namespace, cfg: Any, device: torch.device, size: int, mode: str,
    pairs: list[Pair], cpu: list[Pair], reports: tuple[Counter[str], Counter[str]] | None,
) -> None:
    t = cfg.trainer
    print("\n" + machine_line(device))
    print(
        f"{args.config.name} {' '.join(args.set)}: {cfg.backbone.name}, {cfg.objective.name}, "
        f"batch {cfg.data.batch_size}, uint8 input {size}x{size}, precision {t.precision}, "
        f"progress bar {'on' if t.progress_bar else 'off'}, log every {t.log_every_n_steps} "
        f"steps; interleaved by {mode}, {args.rounds} rounds x ({args.warmup} warm-up + "
        f"{args.steps} timed steps)\n"
    )
    n = args.steps if mode == "rounds" else 1
    cols = "wall ms/step (mean / median)" + (" | CPU ms/step (mean / median)" if cpu else "")
    print(f"| side | {cols} |")
    print("|---|---|" + ("---|" if cpu else ""))
    for k, name in ((0, "minimal loop"), (1, "ssvrl PretrainModule + Trainer")):
        cells = [_mean_median([1e3 * p[k] / n for p in pairs])]
        if cpu:
            cells.append(_mean_median([1e3 * p[k] for p in cpu]))
        print(f"| {name} | {' | '.join(cells)} |")
    print()
    unit = "rounds" if mode == "rounds" else "steps"
    for what, got in (("wall", pairs), ("CPU", cpu)):
        if not got:
            continue
        ratio = sum(p[1] for p in got) / sum(p[0] for p in got)
        median = statistics.median(p[1] / p[0] for p in got)
        extra = 1e3 * (sum(p[1] for p in got) - sum(p[0] for p in got)) / (len(got) * n)
        verdict = "within" if ratio <= 1.05 else "NOT within"
        print(
            f"ssvrl / minimal ({what} time): {ratio:.3f} (summed; median of {len(got)} paired "
            f"{unit}: {median:.3f}; ssvrl costs {extra:+.1f} ms/step): {verdict} 5%"
        )
    if reports is not None:
        # minimal: its whole run (warm-up included); ssvrl: the timed steps only (SyncWindow)
        for name, seen, steps in zip(("minimal", "ssvrl"), reports,
                                     (args.warmup + args.steps, args.steps), strict=True):
            lines = ", ".join(f"{k} x{v / steps:.2f}" for k, v in seen.most_common()) or "none"
            print(f"host syncs per step, {name}: {lines}")
    elif args.sync_report:
        print("host-sync report: CUDA only (not run)")


if __name__ == "__main__":
    main()
