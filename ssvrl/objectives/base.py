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

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ssvrl.augment import AugmentConfig
from ssvrl.data.sampling import ClipSampler, RandomClipSampler, TemporalView
from ssvrl.registry import Registry


@dataclass(frozen=True)
class ObjectiveConfig:
    """Fields every objective config has; subclasses add their own (all YAML-settable)."""

    name: str = "cvrl"


@dataclass(frozen=True)
class ViewSpec:
    """One view: its temporal sampling and its (device-side) augmentation recipe."""

    name: str
    frames: int
    stride: int
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def temporal(self) -> TemporalView:
        return TemporalView(self.name, self.frames, self.stride)


@dataclass
class ObjectiveOutput:
    """``loss``: scalar with grad. ``logs``: detached scalars for the logger (no host sync)."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class of every objective. Subclasses set ``Config`` and implement the methods."""

    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig

    def __init__(self, cfg: ObjectiveConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = embed_dim

    def views(self) -> tuple[ViewSpec, ...]:
        """The views a batch must contain, by name."""
        raise NotImplementedError

    def clip_sampler(self) -> ClipSampler:
        """How the views' frame indices are drawn; default: independent uniform clips."""
        return RandomClipSampler(tuple(v.temporal for v in self.views()))

    def forward(self, encoder: nn.Module, views: dict[str, torch.Tensor]) -> ObjectiveOutput:
        """``views``: ``{name: float (B, C, T, H, W)}`` after augmentation."""
        raise NotImplementedError

    def teacher_modules(self) -> list[nn.Module]:
        """Modules that must never receive gradients (EMA teachers); frozen by the engine."""
        return []

    @torch.no_grad()
    def on_after_optimizer_step(self, encoder: nn.Module, progress: float) -> None:
        """EMA / queue / centre updates; ``progress`` in [0, 1] is the fraction of training."""


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
