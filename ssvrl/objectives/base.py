"""The objective contract: one file, a config dataclass, a class registered by name.

An objective declares the views it needs (temporal sampling and augmentation recipe per view),
builds its own heads, teacher and queues, and turns the encoder and a batch of augmented views
into a scalar loss plus detached logs. It never imports Lightning and never moves itself to a
device (the engine does). State that changes outside gradient descent (EMA teachers, queues,
centres) changes only in :meth:`Objective.on_after_optimizer_step`, which the engine calls once
after every optimizer step, so that a skipped step (non-finite loss) leaves it untouched.

Out-of-tree objectives register the same way from their own module, loaded through the
experiment's ``plugins: [my_package.my_objective]`` list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ssvrl.augment import AugmentConfig, MotionUse
from ssvrl.data.multiview_sampling import MultiViewSampler, ViewTiming
from ssvrl.data.sampling import ClipSampler, RandomClipSampler, TemporalView
from ssvrl.registry import Registry


@dataclass(frozen=True)
class ObjectiveConfig:
    """Fields every objective config has; subclasses add their own (all YAML-settable)."""

    name: str = "cvrl"


@dataclass(frozen=True)
class ViewSpec:
    """One view: its temporal sampling and its (device-side) augmentation recipe.

    ``fps``: sample at this frame rate when the video's rate is known (else every ``stride``
    frames); ``jitter``: per-frame temporal jitter in source frames; ``augment``: the recipe,
    crop size and scale range included; ``motion``: a motion companion (frame differences, FAME
    merging or MCL's motion-focused crop, see :mod:`ssvrl.augment.multiview`).
    """

    name: str
    frames: int
    stride: int
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    fps: float | None = None
    jitter: int = 0
    motion: MotionUse = field(default_factory=MotionUse)

    @property
    def temporal(self) -> TemporalView:
        return TemporalView(self.name, self.frames, self.stride, self.fps)

    @property
    def timing(self) -> ViewTiming:
        return ViewTiming(self.name, self.frames, self.stride, self.fps, self.jitter)


@dataclass(frozen=True)
class ViewConfig:
    """A view as written in YAML; ``count > 1`` repeats it as ``name_0 .. name_{count-1}``.

    SVT (Ranasinghe et al., CVPR 2022, Sec. 3.1), 2 global + 8 local views::

        views:
          - {name: global, count: 2, frames: 8, fps: 4,
             augment: {crop_size: 224, scale: [0.4, 1.0]}}
          - {name: local_a, count: 4, frames: 4, fps: 8,
             augment: {crop_size: 96, scale: [0.05, 0.4]}}
          - {name: local_b, count: 4, frames: 16, fps: 16,
             augment: {crop_size: 96, scale: [0.05, 0.4]}}
    """

    name: str = "view"
    frames: int = 8
    stride: int = 1
    fps: float | None = None
    jitter: int = 0
    count: int = 1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    motion: MotionUse = field(default_factory=MotionUse)


def expand_views(configs: Sequence[ViewConfig]) -> tuple[ViewSpec, ...]:
    """ViewConfigs -> ViewSpecs, repeated views numbered; names must come out unique."""
    specs: list[ViewSpec] = []
    for c in configs:
        if c.count < 1:
            raise ValueError(f"view {c.name!r}: count must be >= 1, got {c.count}")
        names = [c.name] if c.count == 1 else [f"{c.name}_{i}" for i in range(c.count)]
        specs.extend(
            ViewSpec(n, c.frames, c.stride, c.augment, c.fps, c.jitter, c.motion) for n in names
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"view names must be unique, got {names}")
    return tuple(specs)


@dataclass
class ObjectiveOutput:
    """What :meth:`Objective.forward` returns.

    Attributes:
        loss: scalar with grad.
        logs: detached scalars for the logger (no host sync).
        positive_logits: contrastive objectives only: ``(B,)`` logit of each anchor clip's
            positive pair, WITH grad, where the anchors are rows ``0..B-1`` of the FIRST encoder
            call of the step (CVRL/SimCLR: ``clip1`` of the concatenated pass; MoCo: the
            query). Add-ons that explain the positive (MCL's motion alignment, Grad-CAM of the
            positive logit) differentiate it; None when the objective has no positive pair.
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    positive_logits: torch.Tensor | None = None


class Objective(nn.Module):
    """Base class of every objective. Subclasses set ``Config`` and implement the methods."""

    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    # True when the objective is correct with several samples of one video in a batch
    # (``data.repeats > 1``): it has no in-batch negatives, or it masks same-video pairs. Such
    # objectives get ``video_ids=`` (B,) in :meth:`forward`; others refuse ``data.repeats > 1``.
    supports_repeats: ClassVar[bool] = False

    def __init__(self, cfg: ObjectiveConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = embed_dim

    def views(self) -> tuple[ViewSpec, ...]:
        """The views a batch must contain, by name."""
        raise NotImplementedError

    def clip_sampler(self) -> ClipSampler:
        """How the views' frame indices are drawn; default: independent uniform clips."""
        views = self.views()
        if any(v.jitter for v in views):
            return MultiViewSampler(tuple(v.timing for v in views))
        return RandomClipSampler(tuple(v.temporal for v in views))

    def forward(self, encoder: nn.Module, views: dict[str, torch.Tensor]) -> ObjectiveOutput:
        """``views``: ``{name: float (B, C, T, H, W)}`` after augmentation. Objectives with
        ``supports_repeats`` also take ``video_ids``: ``(B,)`` dataset index of each row's
        video (equal ids = samples of one video), unique across processes."""
        raise NotImplementedError

    def teacher_modules(self) -> list[nn.Module]:
        """Modules that must never receive gradients (EMA teachers); frozen by the engine."""
        return []

    @torch.no_grad()
    def on_after_optimizer_step(self, encoder: nn.Module, progress: float) -> None:
        """EMA / queue / centre updates; ``progress`` in [0, 1] is the fraction of training."""


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
