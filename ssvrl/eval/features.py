"""Feature extraction through a frozen backbone (linear probe, kNN, retrieval)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class FeatureSet:
    feats: torch.Tensor  # (N, K, D) float32: K clips per video
    labels: torch.Tensor  # (N,) long
    valid: torch.Tensor  # (N,) bool: False for unreadable videos
    index: torch.Tensor  # (N,) long: position in the dataset's index


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    batches: Iterable[dict[str, Any]],
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
) -> FeatureSet:
    """Run every clip of every video through ``backbone`` in eval mode.

    Eval mode keeps batch-norm running statistics untouched (a frozen probe must not adapt
    them) and ``no_grad`` keeps weights untouched; the caller's train/eval mode is restored.
    ``batches`` yield ``{"clips": uint8 (B, K, C, T, H, W), "label", "valid", "index"}``.
    """
    was_training = backbone.training
    backbone.eval()
    feats, labels, valid, index = [], [], [], []
    try:
        for batch in batches:
            clips = batch["clips"].to(device, non_blocking=True)
            B, K = clips.shape[:2]
            x = transform(clips.flatten(0, 1))  # (B*K, C, T, h, w) float
            f = backbone(x).float().reshape(B, K, -1)  # (B, K, D)
            feats.append(f.cpu())
            labels.append(batch["label"])
            valid.append(batch["valid"])
            index.append(batch["index"])
    finally:
        backbone.train(was_training)
    return FeatureSet(
        torch.cat(feats), torch.cat(labels).long(), torch.cat(valid).bool(), torch.cat(index).long()
    )
