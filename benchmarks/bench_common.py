"""Helpers shared by the training benchmarks (step, overhead, end to end).

Timing rules (all benchmarks): warm-up steps are excluded; on CUDA the device is synchronised
only at the two ends of a timed window (never inside it, so the measurement adds no host
syncs of its own); peak memory is ``torch.cuda.max_memory_allocated`` over the timed window.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "cvrl" / "quickstart.yaml"


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Intra-op CPU threads (``--threads``). On a shared, oversubscribed CPU one thread gives
    far steadier timings: with two, every op waits at an OpenMP barrier for a descheduled
    thread (measured 2026-11-22: 40-760 ms for a 10 ms step)."""
    if threads:
        torch.set_num_threads(threads)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_cell(device: torch.device) -> str:
    """``max_memory_allocated`` in GiB on CUDA; blank elsewhere."""
    if device.type != "cuda":
        return ""
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}"


def free_memory(device: torch.device) -> None:
    """Drop what the last configuration left behind (between table rows)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def machine_line(device: torch.device) -> str:
    """One line naming the hardware, versions and the current load (the machine is shared)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return (
        f"{where}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
        f"load average {load:.1f}; torch {torch.__version__}, lightning {pl.__version__}"
    )


class StepTimes(pl.Callback):
    """Wall time of Lightning training steps ``warmup .. warmup + steps`` (their batch-end
    moments), with a device sync at the two ends of the window only. Everything Lightning
    does for a step (fetch, transfer, augmentation, forward, backward, optimizer, logging)
    lies between two batch ends."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.start: float | None = None
        self.seconds: float | None = None
        self.ends: list[float] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        done = trainer.global_step  # optimizer steps taken so far
        if done == self.warmup:
            sync(self.device)
            reset_peak_memory(self.device)
            self.start = time.perf_counter()
        elif done == self.warmup + self.steps and self.start is not None:
            sync(self.device)
            self.seconds = time.perf_counter() - self.start

    def result(self) -> float:
        if self.seconds is None:
            raise RuntimeError(
                f"the run stopped before {self.warmup} + {self.steps} steps (too few batches?)"
            )
        return self.seconds


def load_config(path: Path, overrides: list[str]) -> Any:
    """An :class:`~ssvrl.config.schema.ExperimentConfig` as ``ssvrl fit CONFIG OVERRIDES``."""
    from ssvrl.cli import load_experiment

    return load_experiment(str(path), overrides)


def autocast_for(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context Lightning's ``precision`` setting uses (``bf16-mixed`` /
    ``16-mixed``; disabled for ``32-true``)."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def device_overrides(device: torch.device) -> list[str]:
    """Config overrides that run the trainer in one process on ``device``."""
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    return [f"trainer.accelerator={accelerator}", "trainer.devices=1", "trainer.strategy=auto"]


def time_steps(step: Callable[[], None], warmup: int, steps: int, device: torch.device
               ) -> tuple[float, float]:  # fmt: skip
    """``(warm-up seconds, seconds per timed step)``: ``warmup`` untimed calls (a compile
    happens in the first), then the peak-memory counter reset and ``steps`` timed ones, with a
    device sync only at the ends of each window."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm_s = time.perf_counter() - t0
    reset_peak_memory(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return warm_s, (time.perf_counter() - t0) / steps


def print_row(head: str, measure: Callable[[], str], compiled: bool, device: torch.device) -> None:
    """Print one table row: ``head`` then the cells ``measure()`` returns, or ``failed: ...``
    (one failing configuration must not end the table); then drop compiled graphs and cached
    memory so the next row starts clean."""
    try:
        cells = measure()
    except Exception as err:  # noqa: BLE001  (any failure becomes the row's cells)
        first = (str(err).splitlines() or [""])[0][:120]
        cells = f"failed: {type(err).__name__}: {first}"
    print(head + cells + " |", flush=True)
    if compiled:
        torch._dynamo.reset()
    free_memory(device)
