"""Multi-clip testing of a classifier: clip scores averaged per video.

The test protocol of the video SSL fine-tuning tables (CVRL Sec. 4.1 and 4.3, after the
multi-clip testing of SlowFast, Feichtenhofer et al. ICCV 2019, Sec. 5): several clips spread
evenly over each test video, each classified on its own; the video's prediction is the mean of
the clips' softmax scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class VideoScores:
    clip_logits: torch.Tensor  # (N, K, C) float32: K clips per video
    labels: torch.Tensor  # (N,) long
    valid: torch.Tensor  # (N,) bool: False for unreadable videos
    index: torch.Tensor  # (N,) long: position in the dataset's index

    @property
    def scores(self) -> torch.Tensor:
        """(N, C) per-video scores: :func:`average_clip_scores` of the clip logits."""
        return average_clip_scores(self.clip_logits)


def average_clip_scores(clip_logits: torch.Tensor) -> torch.Tensor:
    """``(N, K, C)`` clip logits -> ``(N, C)`` video scores: softmax per clip, mean over K.

    Averaging probabilities rather than logits keeps one over-confident clip from outvoting
    the others by the size of its logits alone.
    """
    if clip_logits.dim() != 3:
        raise ValueError(f"expected (N, K, C) clip logits, got shape {tuple(clip_logits.shape)}")
    return clip_logits.float().softmax(dim=-1).mean(dim=1)  # (N, C)


@torch.no_grad()
def score_videos(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> VideoScores:
    """Classify every clip of every video with ``model`` in eval mode.

    ``batches`` yield ``{"clips": uint8 (B, K, C, T, H, W), "label", "valid", "index"}`` (an
    :class:`~ssvrl.data.eval_dataset.EvalClipDataset` loader); ``transform`` maps the flattened
    clips to the model's input on ``device``. ``autocast_dtype``: run the model under
    ``torch.autocast`` (the trainer's mixed precision). The caller's train/eval mode is
    restored.
    """
    was_training = model.training
    model.eval()
    logits, labels, valid, index = [], [], [], []
    try:
        for batch in batches:
            clips = batch["clips"].to(device, non_blocking=True)
            B, K = clips.shape[:2]
            x = transform(clips.flatten(0, 1))  # (B*K, C, T, h, w) float
            with torch.autocast(device.type, autocast_dtype, enabled=autocast_dtype is not None):
                out = model(x)  # (B*K, num_classes)
            logits.append(out.float().reshape(B, K, -1).cpu())  # (B, K, num_classes)
            labels.append(batch["label"])
            valid.append(batch["valid"])
            index.append(batch["index"])
    finally:
        model.train(was_training)
    return VideoScores(
        torch.cat(logits),
        torch.cat(labels).long(),
        torch.cat(valid).bool(),
        torch.cat(index).long(),
    )


def clip_accuracy(scores: VideoScores) -> float:
    """Top-1 (%) of single clips of the readable videos: what multi-clip testing improves on."""
    logits = scores.clip_logits[scores.valid]  # (N_valid, K, C)
    labels = scores.labels[scores.valid]
    if logits.numel() == 0:
        return 0.0
    hit = logits.argmax(dim=-1) == labels[:, None]  # (N_valid, K)
    return 100.0 * hit.float().mean().item()
