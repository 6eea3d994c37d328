"""SimCLR for video: two augmentations of the SAME clip, in-batch negatives.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020:
two augmented views of an example are the positive pair, the other 2(N - 1) views of the batch
its negatives, NT-Xent loss (Sec. 2.1, Eq. 1) on the output of an MLP projection head. For video
the example is one clip: both views read the same frame indices (one temporal window) and
differ only by their spatial augmentation, which is temporally consistent within each view (one
set of crop/colour parameters per clip). This is the "no temporal augmentation" baseline of CVRL
(Qian et al., CVPR 2021, Sec. 3.2 and Table 8a), the contrast MoCo/CVRL's two-clip sampling is
measured against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ssvrl.augment import AugmentConfig, AugmentOverride
from ssvrl.data.sampling import ClipSampler, TemporalView, clip_indices
from ssvrl.heads.mlp import mlp_head
from ssvrl.objectives.base import OBJECTIVES, Objective, ObjectiveConfig, ObjectiveOutput, ViewSpec
from ssvrl.objectives.clip_pair import clip_pair_nce, clip_pair_views

VIEWS = ("clip1", "clip2")


@dataclass(frozen=True)
class SameClipSampler:
    """One uniform random window; every view reads the same indices (views' timing equal)."""

    views: tuple[TemporalView, ...]

    def __post_init__(self) -> None:
        first = self.views[0]
        if any((v.frames, v.stride, v.fps) != (first.frames, first.stride, first.fps)
               for v in self.views):  # fmt: skip
            raise ValueError("SameClipSampler: all views need the same frames, stride and fps")

    def __call__(
        self, num_frames: int, rng: np.random.Generator, fps: float | None = None
    ) -> dict[str, np.ndarray]:
        first = self.views[0]
        start = int(rng.integers(0, max(num_frames - first.span_at(fps), 0) + 1))
        idx = clip_indices(start, first, num_frames, fps)  # (T,)
        return {v.name: idx.copy() for v in self.views}


@dataclass(frozen=True)
class SimCLRConfig(ObjectiveConfig):
    name: str = "simclr"
    frames: int = 16  # T of the clip both views are cut from
    stride: int = 2  # temporal stride inside the clip
    temperature: float = 0.1  # tau of NT-Xent (SimCLR Table 5: 0.1 best with l2-normalised z)
    proj_hidden: int = 2048  # Sec. 2.1: one hidden layer; Linear-BN-ReLU-Linear
    proj_dim: int = 128
    proj_layers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # both views' recipe
    # Per-view changes of ``augment`` by view name (clip1, clip2), see ssvrl.augment.override.
    view_augment: dict[str, AugmentOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.view_augment) - set(VIEWS)
        if unknown:
            raise ValueError(f"view_augment: unknown view(s) {sorted(unknown)}; SimCLR has clip1/2")


@OBJECTIVES.register("simclr")
class SimCLR(Objective):
    """Two spatial augmentations of one clip are positives; the rest of the batch negatives."""

    Config = SimCLRConfig
    provides_positive_logits = True  # ObjectiveOutput.positive_logits: clip1 vs its positive
    supports_repeats = True
    cfg: SimCLRConfig

    def __init__(self, cfg: SimCLRConfig, embed_dim: int) -> None:
        super().__init__(cfg, embed_dim)
        self.head = mlp_head(embed_dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers)

    def views(self) -> tuple[ViewSpec, ...]:
        c = self.cfg
        return clip_pair_views(c.frames, c.stride, c.augment, c.view_augment)

    def clip_sampler(self) -> ClipSampler:
        return SameClipSampler(tuple(v.temporal for v in self.views()))

    def forward(  # type: ignore[override]
        self,
        encoder: nn.Module,
        views: dict[str, torch.Tensor],
        video_ids: torch.Tensor | None = None,
    ) -> ObjectiveOutput:
        return clip_pair_nce(encoder, self.head, views, self.cfg.temperature, video_ids)
