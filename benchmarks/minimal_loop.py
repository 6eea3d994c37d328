"""The hand-written PyTorch training loop that ``overhead_bench.py`` holds ssvrl against, and
the in-memory uint8 batches both sides train on.

The loop does what a training step must and nothing else: batch to the device, the same
``MultiViewAugment`` ssvrl runs after the transfer, the objective (``Objective.run``, so the
YAML add-ons count on both sides) under the same autocast, backward, the optimizer and LR
schedule ssvrl's ``PretrainModule.configure_optimizers`` builds (``ssvrl.engine.optim``), and
gradient clipping when configured, the objective's post-step hook (EMA teachers, queues).
No logging, no checks, no callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from bench_common import autocast_for, sync
from torch.utils.data import DataLoader, Dataset

from ssvrl.augment import MultiViewAugment
from ssvrl.engine.build import build_encoder, build_objective
from ssvrl.engine.module import to_channels_last
from ssvrl.engine.optim import build_optimizer, param_groups, warmup_cosine


def make_batches(cfg: Any, views: Sequence[Any], count: int, input_size: int) -> list[dict]:
    """``count`` collated uint8 batches shaped as the loader makes them: ``views`` name ->
    (B, 3, T, H, W) uint8, ``seeds`` name -> (B,) int64, ``label`` and ``index`` (B,)."""
    g = torch.Generator().manual_seed(0)
    B = cfg.data.batch_size
    out = []
    for k in range(count):
        clips = {
            v.name: torch.randint(
                0, 256, (B, 3, v.frames, input_size, input_size), generator=g, dtype=torch.uint8
            )
            for v in views
        }
        seeds = {v.name: torch.randint(0, 2**62, (B,), generator=g) for v in views}
        index = torch.arange(k * B, (k + 1) * B)
        out.append({"views": clips, "seeds": seeds, "label": index % 6, "index": index})
    return out


class Cycle(Dataset):
    """``length`` ready-made batches cycling over ``batches`` (one epoch covers every step)."""

    def __init__(self, batches: list[dict], length: int) -> None:
        self.batches, self.length = batches, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return self.batches[i % len(self.batches)]


def batch_loader(batches: list[dict], length: int, device: torch.device) -> DataLoader:
    """The batches as a DataLoader (no collation, main process; pinned for CUDA like
    ssvrl's ``PretrainDataModule``)."""
    return DataLoader(
        Cycle(batches, length), batch_size=None, shuffle=False, num_workers=0,
        pin_memory=device.type == "cuda",
    )


def fresh_parts(cfg: Any) -> tuple[torch.nn.Module, Any]:
    """Backbone and objective with the run's initial weights (same seed on both sides)."""
    torch.manual_seed(cfg.seed)
    backbone = build_encoder(cfg)
    return backbone, build_objective(cfg, backbone.num_features)


class MinimalLoop:
    """The hand-written loop; ``total_steps`` sizes the LR schedule as Lightning's would."""

    def __init__(self, cfg: Any, device: torch.device, total_steps: int) -> None:
        self.cfg, self.device = cfg, device
        self.backbone, self.objective = fresh_parts(cfg)
        self.channels_last = cfg.trainer.channels_last  # as PretrainModule does it
        fmt = torch.channels_last_3d if self.channels_last else torch.preserve_format
        self.backbone.to(device, memory_format=fmt)
        self.objective.to(device)
        self.augment = MultiViewAugment(self.objective.views()).to(device)
        for teacher in self.objective.teacher_modules():
            teacher.requires_grad_(False)
        c = cfg.optim
        lr = c.lr * cfg.data.batch_size / 256 if c.lr_scaling == "linear" else c.lr
        groups = param_groups([self.backbone, self.objective], c.weight_decay)
        self.opt = build_optimizer(c.name, groups, lr, c.momentum)
        warm = int(c.warmup_epochs * total_steps / max(cfg.trainer.max_epochs, 1))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda s: warmup_cosine(s, total_steps, warm, c.min_lr_ratio, c.schedule == "cosine"),
        )
        self.total = total_steps
        self.done = 0

    def step(self, batch: dict) -> None:
        dev = self.device
        clips = {k: v.to(dev, non_blocking=True) for k, v in batch["views"].items()}
        views = self.augment(clips, batch["seeds"])  # name -> float (B, C, T, S, S)
        if self.channels_last:
            views = {k: to_channels_last(v) for k, v in views.items()}
        with autocast_for(self.cfg.trainer.precision, dev):
            if self.objective.supports_repeats:
                ids = batch["index"].to(dev, non_blocking=True)
                out = self.objective.run(self.backbone, views, video_ids=ids)
            else:
                out = self.objective.run(self.backbone, views)
        out.loss.backward()
        if self.cfg.trainer.gradient_clip_val:  # as Lightning's gradient_clip_val (norm)
            params = [p for g in self.opt.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.trainer.gradient_clip_val)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.done += 1
        self.objective.on_after_optimizer_step(self.backbone, min(self.done / self.total, 1.0))

    def run(self, batches: list[dict], warmup: int, steps: int) -> float:
        """Seconds for ``steps`` steps after ``warmup`` untimed ones."""
        t0 = time.perf_counter()
        for i in range(warmup + steps):
            if i == warmup:
                sync(self.device)
                t0 = time.perf_counter()
            self.step(batches[i % len(batches)])
        sync(self.device)
        return time.perf_counter() - t0
