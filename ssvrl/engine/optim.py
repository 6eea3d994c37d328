"""Optimizers and per-step learning-rate schedules.

Weight decay skips biases and normalisation parameters (every 1-D parameter), as in SimCLR's
LARS exclusion and the CVRL official code. The schedule is linear warm-up then cosine decay
(CVRL Sec. 4.1: "cosine learning rate decay with linear warm-up"), evaluated per step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Two groups: decayed (>= 2-D weights) and not decayed (biases, norm weights)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    name: str, groups: list[dict], lr: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; known: adamw, sgd")


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0, cosine: bool = True
) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine:
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
