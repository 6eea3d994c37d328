"""Clip samplers: which frame indices each view of a sample reads.

A sampler maps a video's frame count and a ``numpy.random.Generator`` (seeded by the dataset
from ``(seed, epoch, video)``) to ``{view name: (T,) int64 indices}``. Videos shorter than a
clip's span are LOOPED (index modulo the frame count), as CVRL's official input pipeline does
(``_sample_or_pad_sequence_indices`` tiles the sequence), so every video yields a full clip.

Frame rate: a view either steps a fixed number of frames (``stride``) or samples at a target rate
in frames per second (``fps``), whatever the video's own rate, as SlowFast/SVT-style samplers do
(SVT, Ranasinghe et al. CVPR 2022, Sec. 3.1: views "with varying frame rates"). For the latter
the sampler needs the video's rate, passed as ``fps``; a video with an unknown rate (0 or None)
falls back to ``stride``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class TemporalView:
    """The temporal side of a view: ``frames`` frames taken every ``stride`` frames, or, when
    ``fps`` is set, at ``fps`` frames per second of video time."""

    name: str
    frames: int
    stride: int
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1:
            raise ValueError(f"view {self.name!r}: frames and stride must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"view {self.name!r}: fps must be > 0, got {self.fps}")

    def step(self, video_fps: float | None = None) -> float:
        """Frames between two sampled frames: ``stride``, or ``video_fps / fps`` at a rate."""
        if self.fps is not None and video_fps:
            return video_fps / self.fps
        return float(self.stride)

    def offsets(self, video_fps: float | None = None) -> np.ndarray:
        """``(T,)`` frame offsets from the clip's first frame."""
        step = self.step(video_fps)
        return np.floor(np.arange(self.frames) * step + 0.5).astype(np.int64)  # nearest frame

    def span_at(self, video_fps: float | None = None) -> int:
        """Frames covered from the first to the last sampled frame, inclusive."""
        return int(self.offsets(video_fps)[-1]) + 1

    @property
    def span(self) -> int:
        """:meth:`span_at` with the fixed ``stride`` (the span when no rate is set)."""
        return (self.frames - 1) * self.stride + 1


class ClipSampler(Protocol):
    @property
    def views(self) -> tuple[TemporalView, ...]: ...

    def __call__(
        self, num_frames: int, rng: np.random.Generator, fps: float | None = None
    ) -> dict[str, np.ndarray]:
        """``{view name: (T,) int64 frame indices}`` for a video of ``num_frames`` frames at
        ``fps`` frames per second (None or 0 when unknown)."""
        ...


def clip_indices(
    start: int, view: TemporalView, num_frames: int, fps: float | None = None
) -> np.ndarray:
    """``(T,)`` indices ``start + offsets`` looped modulo ``num_frames``."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    return (start + view.offsets(fps)) % num_frames


def decreasing_interval(max_gap: int, u: float, power: float = 1.0) -> int:
    """Inverse CDF of CVRL's temporal-interval distribution, ``P(t) ∝ 1 - (t / M)^power`` on [0, M].

    CVRL, Sec. 3.2: the gap between the two clips' starts is drawn from a monotonically
    decreasing distribution, linear by default (``power=1``; the official code's CDF is
    ``F(k) = (p+1)/p * k/M - k^(p+1) / (p * M^(p+1))``). Power 1 has the closed form
    ``t = M (1 - sqrt(1 - u))``; other powers are inverted by bisection.
    """
    if max_gap <= 0:
        return 0
    if power == 1.0:
        return min(int(max_gap * (1.0 - math.sqrt(1.0 - u))), max_gap)
    lo, hi = 0.0, float(max_gap)
    p = power
    for _ in range(60):
        mid = (lo + hi) / 2
        cdf = (p + 1) / p * mid / max_gap - mid ** (p + 1) / (p * max_gap ** (p + 1))
        lo, hi = (mid, hi) if cdf < u else (lo, mid)
    return min(int(lo), max_gap)


@dataclass(frozen=True)
class IntervalPairSampler:
    """CVRL's two clips: the first start uniform, the second ``t`` frames later (or earlier).

    ``max_gap = L - span`` for a video of ``L`` frames, capped by ``max_interval`` if given; the
    gap is drawn from :func:`decreasing_interval` and the pair's order is shuffled (as the
    official code does), so neither view is systematically the earlier one.
    """

    views: tuple[TemporalView, TemporalView]
    power: float = 1.0
    max_interval: int | None = None

    def __call__(
        self, num_frames: int, rng: np.random.Generator, fps: float | None = None
    ) -> dict[str, np.ndarray]:
        a, b = self.views
        span = max(a.span_at(fps), b.span_at(fps))
        max_gap = max(num_frames - span, 0)
        if self.max_interval is not None:
            max_gap = min(max_gap, self.max_interval)
        gap = decreasing_interval(max_gap, float(rng.random()), self.power)
        first = int(rng.integers(0, max(num_frames - span - gap, 0) + 1))
        starts = [first, first + gap]
        if rng.random() < 0.5:
            starts.reverse()
        return {
            a.name: clip_indices(starts[0], a, num_frames, fps),
            b.name: clip_indices(starts[1], b, num_frames, fps),
        }


@dataclass(frozen=True)
class RandomClipSampler:
    """Each view an independent clip at a uniform random start (SimCLR-style, probe training)."""

    views: tuple[TemporalView, ...]

    def __call__(
        self, num_frames: int, rng: np.random.Generator, fps: float | None = None
    ) -> dict[str, np.ndarray]:
        out = {}
        for v in self.views:
            start = int(rng.integers(0, max(num_frames - v.span_at(fps), 0) + 1))
            out[v.name] = clip_indices(start, v, num_frames, fps)
        return out


def uniform_starts(num_frames: int, span: int, num_clips: int) -> list[int]:
    """Start frames of ``num_clips`` clips spread evenly over the video (the test protocol).

    Clip centres at ``(k + 0.5) / num_clips`` of the usable range, as in the multi-clip testing
    of Feichtenhofer et al. (SlowFast) and the CVRL evaluation (Sec. 4.1).
    """
    usable = max(num_frames - span, 0)
    if num_clips == 1:
        return [usable // 2]
    return [round(usable * k / (num_clips - 1)) for k in range(num_clips)]
