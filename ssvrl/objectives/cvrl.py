"""CVRL: Spatiotemporal Contrastive Video Representation Learning (Qian et al., CVPR 2021).

Two clips of the same video, at a temporal gap drawn from a decreasing distribution (Sec. 3.2),
each augmented with temporally consistent spatial augmentation (Sec. 3.3: one set of crop,
flip, colour and blur parameters per clip, shared by its frames); a 3-layer MLP head and
InfoNCE with temperature 0.1 against every other clip of the global batch (Sec. 3.1, Eq. 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ssvrl.augment import AugmentConfig, AugmentOverride
from ssvrl.data.sampling import ClipSampler, IntervalPairSampler
from ssvrl.heads.mlp import mlp_head
from ssvrl.objectives.base import OBJECTIVES, Objective, ObjectiveConfig, ObjectiveOutput, ViewSpec
from ssvrl.objectives.clip_pair import clip_pair_nce, clip_pair_views


@dataclass(frozen=True)
class CVRLConfig(ObjectiveConfig):
    name: str = "cvrl"
    frames: int = 16  # T per clip (paper: 16 at 224 px; 32 for the 64-frame stride-2 variant)
    stride: int = 2  # temporal stride inside a clip (paper: 2 for K400 at 25 fps)
    temperature: float = 0.1  # tau of Eq. 1 (Sec. 4.1)
    interval_power: float = 1.0  # P(t) ∝ 1 - (t/M)^power; 1 = the paper's linear default
    max_interval: int | None = None  # cap on the gap in frames; None = the whole video
    proj_hidden: int = 2048
    proj_dim: int = 128
    proj_layers: int = 3
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # both views' recipe
    # Per-view changes of ``augment`` by view name (clip1, clip2); the released recipe is
    # {clip1: {blur_p: 1.0}, clip2: {blur_p: 0.1, solarize_p: 0.2}} (ssvrl.augment.override).
    view_augment: dict[str, AugmentOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.view_augment) - {"clip1", "clip2"}
        if unknown:
            raise ValueError(f"view_augment: unknown view(s) {sorted(unknown)}; CVRL has clip1/2")


@OBJECTIVES.register("cvrl")
class CVRL(Objective):
    """Two temporally distant clips are positives; every other clip in the batch a negative."""

    Config = CVRLConfig
    supports_repeats = True
    provides_positive_logits = True  # ObjectiveOutput.positive_logits: clip1 vs its clip2
    cfg: CVRLConfig

    def __init__(self, cfg: CVRLConfig, embed_dim: int) -> None:
        super().__init__(cfg, embed_dim)
        self.head = mlp_head(embed_dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers)

    def views(self) -> tuple[ViewSpec, ...]:
        c = self.cfg
        return clip_pair_views(c.frames, c.stride, c.augment, c.view_augment)

    def clip_sampler(self) -> ClipSampler:
        v1, v2 = (v.temporal for v in self.views())
        return IntervalPairSampler((v1, v2), self.cfg.interval_power, self.cfg.max_interval)

    def forward(  # type: ignore[override]
        self,
        encoder: nn.Module,
        views: dict[str, torch.Tensor],
        video_ids: torch.Tensor | None = None,
    ) -> ObjectiveOutput:
        return clip_pair_nce(encoder, self.head, views, self.cfg.temperature, video_ids)
