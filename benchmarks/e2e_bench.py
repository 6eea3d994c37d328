"""End to end: ``ssvrl fit`` throughput with the real loader vs the training step alone on the
same batches held in memory, i.e. what the data pipeline costs.

Real video files: the synthetic motion dataset (``ssvrl data synth``, UCF101 layout; written
into a temporary folder unless ``--data`` names one) decoded by the real
``PretrainDataModule`` (its workers, sampler and collation). Three rows, one run:

- ``loader alone``: the datamodule's DataLoader iterated without training (first batch,
  i.e. worker start-up, not timed);
- ``fit, real loader``: what ``ssvrl fit`` does (``ssvrl.engine.build``: ``make_run_dir``,
  ``build_pretrain``, ``build_trainer``, ``trainer.fit``), timed over ``--steps`` steps after
  ``--warmup`` (Lightning batch ends; a device sync at the two ends only);
- ``fit, batches in memory``: a fresh module with the same initial weights, the same trainer,
  fed the first batches of the same loader, collected beforehand and cycled with the real
  epoch length (so epoch-end work such as checkpoints is the same on both sides).

``--rounds`` alternates the two fits. The online probe is turned off (its validation would
only run on the real-loader side).

    .venv/bin/python benchmarks/e2e_bench.py [--data DIR] [--workers 2] [--steps 20]
        [--config experiments/cvrl/quickstart.yaml] [--set data.batch_size=16 ...]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from collections.abc import Sequence
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
from minimal_loop import batch_loader

from ssvrl.engine.build import build_pretrain, build_trainer, make_run_dir


def synth_data(out: Path, args: argparse.Namespace) -> Path:
    """The synthetic dataset, as ``ssvrl data synth`` writes it (PyAV only needed here)."""
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    spec = SynthSpec(
        num_classes=args.synth_classes, groups=args.synth_groups, clips_per_group=2,
        frames=args.synth_frames, size=args.synth_size,
    )
    write_synthetic_dataset(out, spec, workers=args.synth_workers)
    return out


def fit_real(cfg: Any, timer: StepTimes) -> float:
    """``ssvrl fit`` as ``ssvrl.engine.build.fit`` runs it, plus the timer; returns the wall
    time of the whole fit (start-up included)."""
    t0 = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = make_run_dir(cfg)
    parts = build_pretrain(cfg, run_dir)
    trainer = build_trainer(cfg, run_dir, parts.bad)
    trainer.callbacks.append(timer)
    trainer.fit(parts.module, datamodule=parts.datamodule)
    return time.perf_counter() - t0


def collect(cfg: Any, count: int) -> tuple[list[dict], int, float]:
    """The first ``count`` batches of the real loader, its batches per epoch and the loader's
    own rate in samples/s (first batch not timed)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build_pretrain(cfg, make_run_dir(cfg))
    loader = parts.datamodule.train_dataloader()
    per_epoch = len(loader)
    batches: list[dict] = []
    it = iter(loader)
    batches.append(next(it))
    t0 = time.perf_counter()
    for batch in it:
        batches.append(batch)
        if len(batches) >= count:
            break
    rate = (len(batches) - 1) * cfg.data.batch_size / max(time.perf_counter() - t0, 1e-9)
    del it, loader
    return batches, per_epoch, rate


def fit_memory(cfg: Any, batches: list[dict], per_epoch: int, timer: StepTimes,
               device: torch.device) -> None:
    """The same fit, fed the collected batches (cycled, ``per_epoch`` per epoch)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = make_run_dir(cfg)
    parts = build_pretrain(cfg, run_dir)
    trainer = build_trainer(cfg, run_dir, parts.bad)
    trainer.callbacks.append(timer)
    trainer.fit(parts.module, train_dataloaders=batch_loader(batches, per_epoch, device))


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=QUICKSTART)
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    p.add_argument("--data", type=Path, default=None, help="a `ssvrl data synth` folder")
    p.add_argument("--synth-classes", type=int, default=6)
    p.add_argument("--synth-groups", type=int, default=6)
    p.add_argument("--synth-frames", type=int, default=64)
    p.add_argument("--synth-size", type=int, default=64)
    p.add_argument("--synth-workers", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="data.num_workers (default: config)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`validation_step` but have no `val_dataloader`.*")
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="ssvrl-e2e-") as tmp:
        t0 = time.perf_counter()
        data = args.data or synth_data(Path(tmp) / "data", args)
        synth_s = time.perf_counter() - t0
        overrides = [
            f"data.root={data / 'videos'}", f"data.annotations={data / 'annotations'}",
            *args.set, *device_overrides(device), f"out_dir={Path(tmp) / 'runs'}",
            f"trainer.max_steps={total}", "trainer.max_epochs=1000", "online_probe.enabled=false",
        ]
        if args.workers is not None:
            overrides.append(f"data.num_workers={args.workers}")
        cfg = load_config(args.config, overrides)
        batches, per_epoch, loader_rate = collect(cfg, total)
        batches = batches[: min(len(batches), per_epoch)]
        real, memory, walls = [], [], []
        for _ in range(args.rounds):
            timer = StepTimes(args.warmup, args.steps, device)
            walls.append(fit_real(cfg, timer))
            real.append(timer.result())
            timer = StepTimes(args.warmup, args.steps, device)
            fit_memory(cfg, batches, per_epoch, timer, device)
            memory.append(timer.result())
    print_table(args, cfg, device, synth_s if args.data is None else None, per_epoch,
                loader_rate, real, memory, walls)


def print_table(
    args: argparse.Namespace, cfg: Any, device: torch.device, synth_s: float | None,
    per_epoch: int, loader_rate: float, real: list[float], memory: list[float],
    walls: list[float],
) -> None:
    from ssvrl.engine.build import build_encoder, build_objective

    clips_per_sample = len(build_objective(cfg, build_encoder(cfg).num_features).views())
    B, n = cfg.data.batch_size, args.steps
    print("\n" + machine_line(device))
    made = f"written in {synth_s:.0f} s" if synth_s is not None else f"from {args.data}"
    print(
        f"{args.config.name} {' '.join(args.set)}: {cfg.backbone.name}, {cfg.objective.name}, "
        f"batch {B} x {clips_per_sample} clips, {cfg.data.num_workers} workers, precision "
        f"{cfg.trainer.precision}; synthetic videos {made}; {per_epoch} steps per epoch; "
        f"{args.rounds} round(s) of {args.warmup} warm-up + {n} timed steps\n"
    )
    mem_s = sum(memory) / len(memory) / n
    print("| pipeline | ms/step | clips/s | vs batches in memory |")
    print("|---|---|---|---|")
    print(f"| loader alone (no training) | | {loader_rate * clips_per_sample:.1f} | |")
    for name, times in (("ssvrl fit, real loader", real), ("ssvrl fit, batches in memory",
                                                           memory)):
        s = sum(times) / len(times) / n
        print(f"| {name} | {1e3 * s:.1f} | {B * clips_per_sample / s:.1f} | {s / mem_s:.2f}x |")
    print(f"\nwhole fit() wall time incl. start-up ({n + args.warmup} steps): "
          + ", ".join(f"{w:.1f} s" for w in walls))


if __name__ == "__main__":
    main()
