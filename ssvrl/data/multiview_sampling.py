"""Temporal sampling of many views per video: clip length, frame stride OR frame rate, jitter.

SVT (Ranasinghe et al., CVPR 2022, Sec. 3.1 "motion and spatial views") samples global and
local views of one video with different numbers of frames and different frame rates; each view
here is a :class:`ViewTiming`, and :class:`MultiViewSampler` draws each view independently from
the sample's generator (seeded by the dataset from ``(seed, epoch, video)``), so the indices do
not depend on the number of workers or processes.

A view's frame step is ``stride`` frames, or ``video_fps / fps`` when the view asks for a frame
rate and the video's rate is known (fractional steps go to a whole frame as
:meth:`TemporalView.offsets` rounds them: 30 fps -> 8 fps steps 3.75 frames). Temporal jitter
moves each frame by an integer drawn uniformly in ``[-jitter, jitter]`` (kept in time order).
Short videos are looped, as :mod:`ssvrl.data.sampling` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssvrl.data.sampling import TemporalView


@dataclass(frozen=True)
class ViewTiming:
    """The temporal side of one view: ``frames`` frames every ``stride`` frames or at ``fps``."""

    name: str
    frames: int
    stride: int = 1
    fps: float | None = None  # target frame rate; None (or unknown video rate): use stride
    jitter: int = 0  # per-frame temporal jitter, in source frames

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1 or self.jitter < 0:
            raise ValueError(f"invalid view timing {self}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"view {self.name!r}: fps must be > 0, got {self.fps}")

    @property
    def temporal(self) -> TemporalView:
        """The jitter-free :class:`TemporalView` (its ``offsets`` and ``span_at`` are used)."""
        return TemporalView(self.name, self.frames, self.stride, self.fps)

    def span(self, video_fps: float | None) -> int:
        """Source frames covered from the first to the last sampled frame, inclusive."""
        return self.temporal.span_at(video_fps)

    def indices(
        self, start: int, num_frames: int, video_fps: float | None, rng: np.random.Generator
    ) -> np.ndarray:
        """``(T,)`` int64 indices from ``start``, jittered, looped modulo ``num_frames``.

        Draws ``T`` integers from ``rng`` when ``jitter > 0`` and nothing otherwise.
        """
        if num_frames < 1:
            raise ValueError(f"a video needs at least one frame, got {num_frames}")
        idx = start + self.temporal.offsets(video_fps)
        if self.jitter > 0:
            idx = np.sort(idx + rng.integers(-self.jitter, self.jitter + 1, size=self.frames))
            idx = np.clip(idx, start, None)  # never before the clip's start
        return idx % num_frames


def random_start(span: int, num_frames: int, rng: np.random.Generator) -> int:
    """A uniform start such that ``span`` frames fit (0 when the video is shorter)."""
    return int(rng.integers(0, max(num_frames - span, 0) + 1))


@dataclass(frozen=True)
class MultiViewSampler:
    """Every view an independent clip at a uniform start (SVT's global and local views).

    Implements the :class:`~ssvrl.data.sampling.ClipSampler` protocol including the video's
    frame rate ``fps`` (None when the container does not say; views then use their stride).
    Random draws per view, in view order: one start, then ``T`` jitter offsets if jittered.
    """

    timings: tuple[ViewTiming, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in self.timings]
        if len(set(names)) != len(names):
            raise ValueError(f"view names must be unique, got {names}")

    @classmethod
    def of(cls, timings: Sequence[ViewTiming]) -> MultiViewSampler:
        return cls(tuple(timings))

    @property
    def views(self) -> tuple[TemporalView, ...]:
        return tuple(t.temporal for t in self.timings)

    def __call__(
        self, num_frames: int, rng: np.random.Generator, fps: float | None = None
    ) -> dict[str, np.ndarray]:
        out = {}
        for t in self.timings:
            start = random_start(t.span(fps), num_frames, rng)
            out[t.name] = t.indices(start, num_frames, fps, rng)
        return out
