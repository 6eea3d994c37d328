"""FAME: Motion-aware Contrastive Video Representation Learning via Foreground-background
Merging (Ding et al., CVPR 2022).

MoCo (:mod:`ssvrl.objectives.moco`) whose query view is FAME-merged (Sec. 3.2-3.3): the
moving foreground of each clip is pasted onto the background of another video of the batch
(:mod:`ssvrl.augment.fame`), and the merged clip must still match a clip of its own video.
Backgrounds then no longer identify the video, so the encoder has to use the foreground's
motion. The merge runs in the engine's device-side augmentation, before the view's own recipe;
the mask travels with the batch as ``"clip1/fame_mask"``.

Any other objective gets the same merge from YAML, without this class, through the generic
per-view override (``objective.view_motion: {clip1: {kind: fame}}``, see
:mod:`ssvrl.objectives.base`); FAME only makes it the default on MoCo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ssvrl.augment import FameConfig, MotionUse
from ssvrl.objectives.base import OBJECTIVES, ViewSpec
from ssvrl.objectives.moco import VIEWS, MoCo, MoCoConfig


@dataclass(frozen=True)
class FAMEConfig(MoCoConfig):
    name: str = "fame"
    temperature: float = 0.1  # FAME's released training (MoCo's paper: 0.07)
    fame: FameConfig = field(default_factory=FameConfig)  # mask: area beta = 0.5 (Sec. 3.2)
    fame_views: tuple[str, ...] = ("clip1",)  # merged views: the query

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "fame_views", tuple(self.fame_views))
        unknown = set(self.fame_views) - set(VIEWS)
        if unknown:
            raise ValueError(f"fame_views: unknown view(s) {sorted(unknown)}; FAME has {VIEWS}")


@OBJECTIVES.register("fame")
class FAME(MoCo):
    """MoCo whose query clip keeps its foreground on another video's background."""

    Config = FAMEConfig
    cfg: FAMEConfig

    def views(self) -> tuple[ViewSpec, ...]:
        merge = MotionUse(kind="fame", fame=self.cfg.fame)
        return tuple(
            replace(v, motion=merge) if v.name in self.cfg.fame_views else v
            for v in super().views()
        )
