"""Online linear probing: SGD over freshly augmented clips through a frozen encoder.

The classic linear evaluation (CVRL, Qian et al. 2021: a linear classifier trained on frozen
features of augmented training clips), as opposed to fitting on cached features. Every epoch
decodes one random clip per training video, augments it with the pretraining view's recipe
(per-clip seeds from ``(seed, epoch, video)``), encodes it with the backbone in eval mode under
``no_grad`` (weights and batch-norm statistics untouched) and takes an SGD step on the head.

Across processes each rank encodes its own clips; features and labels are gathered, so every
rank takes the same step on the global batch and the heads stay identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ssvrl.eval.distributed import gather_rows
from ssvrl.eval.features import Augment
from ssvrl.eval.linear_probe import LinearHead, sgd_optimizer


def train_online(
    backbone: nn.Module,
    head: LinearHead,
    batches_for_epoch: Callable[[int], Iterable[dict[str, Any]]],
    augment: Augment,
    *,
    view: str,
    epochs: int,
    steps_per_epoch: int,
    lr: float,
    weight_decay: float,
    device: torch.device,
) -> LinearHead:
    """Train ``head`` for ``epochs`` x ``steps_per_epoch`` SGD steps (cosine ``lr``).

    ``batches_for_epoch(e)`` yields ``{"views": {view: uint8 (B, C, T, H, W)}, "seeds":
    {view: (B,)}, "label": (B,)}``; every rank must yield the same number of batches (an
    ``EpochSampler`` with ``drop_last`` does). Returns the head in eval mode; the backbone's
    train/eval mode is restored.
    """
    opt, sched = sgd_optimizer(head, lr, epochs * steps_per_epoch)
    was_training = backbone.training
    backbone.eval()
    head.to(device).train()
    try:
        for epoch in range(epochs):
            for batch in batches_for_epoch(epoch):
                clips = batch["views"][view].to(device, non_blocking=True)
                with torch.no_grad():
                    f = backbone(augment(clips, batch["seeds"][view])).float()  # (B, D)
                f = gather_rows(f)  # (B_global, D)
                y = gather_rows(torch.as_tensor(batch["label"]).to(device))  # (B_global,)
                head.observe(f)
                opt.zero_grad()
                head.loss(f, y, weight_decay).backward()
                opt.step()
                sched.step()
    finally:
        backbone.train(was_training)
    return head.eval()
