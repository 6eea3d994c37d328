"""Feature extraction through a frozen backbone (linear probe, kNN, retrieval).

Features of every clip (and crop) are kept, ``(N, K, D)``; evaluators average them or their
scores per video. Optionally each clip is also run through a training augmentation with seeds
derived from ``(seed, video index, copy, clip)``, so the augmented features are the same
whatever the batch size, worker count or number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

Augment = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (clips, seeds) -> float clips


@dataclass
class FeatureSet:
    feats: torch.Tensor  # (N, K, D) float32: K clips (x crops) per video
    labels: torch.Tensor  # (N,) long
    valid: torch.Tensor  # (N,) bool: False for unreadable videos
    index: torch.Tensor  # (N,) long: position in the dataset's index
    augmented: torch.Tensor | None = None  # (N, R, K, D): R augmented copies of every clip

    def select(self, rows: torch.Tensor) -> FeatureSet:
        """The videos at ``rows`` (indices or a bool mask)."""
        aug = None if self.augmented is None else self.augmented[rows]
        return FeatureSet(
            self.feats[rows], self.labels[rows], self.valid[rows], self.index[rows], aug
        )

    def readable(self) -> FeatureSet:
        return self.select(self.valid)


def clip_seeds(seed: int, index: torch.Tensor, copy: int, clips: int) -> torch.Tensor:
    """``(B * clips,)`` int64 augmentation seeds, video-major, each from
    ``SeedSequence([seed, video index, copy, clip])``."""
    out = [
        int(np.random.default_rng(np.random.SeedSequence([seed, int(i), copy, k])).integers(2**62))
        for i in index.tolist()
        for k in range(clips)
    ]
    return torch.tensor(out, dtype=torch.int64)


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    batches: Iterable[dict[str, Any]],
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    *,
    augment: Augment | None = None,
    copies: int = 0,
    seed: int = 0,
) -> FeatureSet:
    """Run every clip of every video through ``backbone`` in eval mode.

    Eval mode keeps batch-norm running statistics untouched (a frozen probe must not adapt
    them) and ``no_grad`` keeps weights untouched; the caller's train/eval mode is restored.
    ``batches`` yield ``{"clips": uint8 (B, K, C, T, H, W), "label", "valid", "index"}``;
    ``transform`` maps uint8 clips to the encoder's input (the centre view). With ``augment``
    and ``copies = R > 0`` every clip is also augmented R times (:func:`clip_seeds`).
    """
    was_training = backbone.training
    backbone.eval()
    feats, augs, labels, valid, index = [], [], [], [], []
    try:
        for batch in batches:
            clips = batch["clips"].to(device, non_blocking=True)
            B, K = clips.shape[:2]
            flat = clips.flatten(0, 1)  # (B*K, C, T, H, W) uint8
            feats.append(backbone(transform(flat)).float().reshape(B, K, -1).cpu())  # (B, K, D)
            if augment is not None and copies > 0:
                per_copy = [
                    backbone(augment(flat, clip_seeds(seed, batch["index"], r, K)))
                    .float()
                    .reshape(B, K, -1)
                    .cpu()
                    for r in range(copies)
                ]
                augs.append(torch.stack(per_copy, dim=1))  # (B, R, K, D)
            labels.append(torch.as_tensor(batch["label"]))
            valid.append(torch.as_tensor(batch["valid"]))
            index.append(torch.as_tensor(batch["index"]))
    finally:
        backbone.train(was_training)
    if not feats:
        raise ValueError("extract_features: no batches (empty dataset or shard)")
    return FeatureSet(
        torch.cat(feats),
        torch.cat(labels).long(),
        torch.cat(valid).bool(),
        torch.cat(index).long(),
        torch.cat(augs) if augs else None,
    )
