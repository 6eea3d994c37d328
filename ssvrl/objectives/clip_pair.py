"""The two-clip InfoNCE step shared by CVRL and SimCLR: they differ only in how the two clips
are placed in time (their samplers), not in the views' recipe or the loss.

CVRL (Qian et al., CVPR 2021), Sec. 3.1, Eq. 1: both clips through the encoder in one pass (so
batch-norm statistics see the whole 2B batch), a projection head, InfoNCE against every other
clip of the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.augment import AugmentConfig, AugmentOverride, apply_override
from ssvrl.losses.info_nce import info_nce
from ssvrl.objectives.base import ObjectiveOutput, ViewSpec

CLIPS = ("clip1", "clip2")


def clip_pair_views(
    frames: int,
    stride: int,
    augment: AugmentConfig,
    overrides: Mapping[str, AugmentOverride],
) -> tuple[ViewSpec, ViewSpec]:
    """``clip1`` and ``clip2``: the shared recipe with each clip's own override applied."""
    one, two = (
        ViewSpec(name, frames, stride, apply_override(augment, overrides.get(name)))
        for name in CLIPS
    )
    return one, two


def clip_pair_nce(
    encoder: nn.Module,
    head: nn.Module,
    views: Mapping[str, torch.Tensor],
    temperature: float,
    video_ids: torch.Tensor | None = None,
) -> ObjectiveOutput:
    """InfoNCE between ``clip1`` and ``clip2``; rows ``0..B-1`` of the one encoder call are
    ``clip1`` (the anchors of ``positive_logits``). ``video_ids`` mask repeated samples of one
    video out of the negatives (``data.repeats > 1``)."""
    B = views["clip1"].shape[0]
    h = encoder(torch.cat([views["clip1"], views["clip2"]]))  # (2B, D)
    z = head(h)  # (2B, proj_dim)
    loss = info_nce(z[:B], z[B:], temperature, video_ids=video_ids)
    n = F.normalize(z.float(), dim=1)  # (2B, proj_dim)
    positive = (n[:B] * n[B:]).sum(dim=1) / temperature  # (B,) logit of Eq. 1, with grad
    with torch.no_grad():
        std = n.std(dim=0).mean()
    return ObjectiveOutput(loss, {"embedding_std": std}, positive_logits=positive, features=h[:B])
