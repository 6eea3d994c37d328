"""The views an objective declares: :class:`ViewSpec` (one named view: temporal sampling plus
device-side augmentation), :class:`ViewConfig` (a view as written in YAML, with ``count``) and
:func:`expand_views` (ViewConfigs -> ViewSpecs). Re-exported by :mod:`ssvrl.objectives.base`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ssvrl.augment import AugmentConfig, MotionUse
from ssvrl.data.multiview_sampling import ViewTiming
from ssvrl.data.sampling import TemporalView


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
