"""Parts of self-distillation with an EMA teacher (DINO, Caron et al., ICCV 2021; SVT,
Ranasinghe et al., CVPR 2022) that do not depend on SVT's config: the half-cosine schedule of
the teacher momentum and the weight decay, the multi-crop encoder pass, the quiet teacher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from timm.layers import DropPath
from torch import nn


def cosine_ramp(start: float, end: float, progress: float) -> float:
    """``start`` at progress 0 to ``end`` at 1 on a half cosine (DINO's momentum and weight
    decay schedules: ``end - (end - start) (1 + cos(pi p)) / 2``)."""
    p = min(max(progress, 0.0), 1.0)
    return end - (end - start) * (1.0 + math.cos(math.pi * p)) / 2.0


def encode_views(encoder: nn.Module, clips: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(V*B, D)`` features of ``V`` views of ``(B, C, T, H, W)`` each, in order; consecutive
    views of one shape go through the encoder as one batch (DINO's multi-crop wrapper)."""
    feats: list[torch.Tensor] = []
    start = 0
    while start < len(clips):
        end = start + 1
        while end < len(clips) and clips[end].shape == clips[start].shape:
            end += 1
        feats.append(encoder(torch.cat(list(clips[start:end]))))  # (n*B, D)
        start = end
    return torch.cat(feats)


def quiet_teacher(module: nn.Module) -> None:
    """Dropout and stochastic depth off (the teacher has none in DINO)."""
    for m in module.modules():
        if isinstance(m, (nn.Dropout, DropPath)):
            m.eval()
