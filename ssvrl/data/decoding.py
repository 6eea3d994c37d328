"""How videos are decoded and what a clip sampler sees of an open video.

:class:`DecodeConfig` holds the decode settings; :func:`frame_source` turns an open
:class:`~ssvrl.data.video_reader.VideoReader` into the :class:`FrameSource` samplers choose
from: the reader's own frames, or with ``sample_by="time"`` a uniform time grid
(:func:`time_grid`) mapped onto real frames, plus the stored optical flow as a motion map.
Re-exported by :mod:`ssvrl.data.dataset`, which reads the clips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from ssvrl.data.video_reader import VideoReader, VideoReadError


@dataclass(frozen=True)
class DecodeConfig:
    """How videos are read.

    Attributes:
        backend: decoder library.
        short_side: frames are resized on decode so that ``min(H, W) == short_side``.
        max_retries: unreadable videos replaced in a row before a sample fails.
        timeout: seconds one video's decode may take before it counts as bad (0: no limit).
        sample_by: ``"index"`` reads frame numbers; ``"time"`` reads the samplers' indices as
            times on a uniform grid at the video's average rate and takes the frame shown at
            each time, so variable-frame-rate videos are sampled evenly in time.
        repeats: samples drawn from each decoded video (repeated augmentation): every repeat
            has its own clip positions and augmentation seeds, one decode serves them all.
        frame_fps, frame_template: rate and file names of frame-folder videos (they store no
            rate; mmaction2's rawframes use ``img_{:05d}.jpg``).
        flow: also read each view's stored optical flow (frame folders with denseflow
            ``x_/y_`` JPEGs) as a motion map: the flow magnitude in pixels, cropped like the
            view, under ``"<view>/motion"``; videos without flow count as unreadable.
    """

    backend: Literal["decord", "pyav"] = "decord"
    short_side: int = 128
    max_retries: int = 20
    timeout: float = 60.0
    sample_by: Literal["index", "time"] = "index"
    repeats: int = 1
    frame_fps: float = 30.0
    frame_template: str = "img_{:05d}.jpg"
    flow: bool = False
    flow_bound: float = 20.0

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.sample_by not in ("index", "time"):
            raise ValueError(f"sample_by must be 'index' or 'time', got {self.sample_by!r}")


MOTION_SUFFIX = "/motion"  # read_views key of a view's stored-flow motion map

Chooser = Callable[[int, "float | None"], dict[str, np.ndarray]]


class FrameSource(NamedTuple):
    """What a sampler sees of an open video: frame count, rate, and ``get_frames(indices) ->
    uint8 (U, H, W, 3)``."""

    num_frames: int
    fps: float | None
    get_frames: Callable[[list[int]], torch.Tensor]
    get_motion: Callable[[list[int]], torch.Tensor] | None = None  # float (U, H, W, 1)


@runtime_checkable
class FrameReadingSampler(Protocol):
    """A sampler that looks at frames before choosing (MCL's motion-focused windows): its
    ``read`` decodes what it needs through ``get_frames`` and returns ``{view: uint8 (T, H, W,
    3)}``. The dataset calls it instead of ``__call__`` when present."""

    def read(
        self,
        get_frames: Callable[[list[int]], torch.Tensor],
        num_frames: int,
        rng: np.random.Generator,
        fps: float | None = None,
    ) -> dict[str, torch.Tensor]: ...


def time_grid(times: np.ndarray, fps: float) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    """A uniform time grid over a video with per-frame ``times`` (seconds, increasing).

    Returns the grid's length (frames the video would have at a constant ``fps``) and a map
    from grid positions to real frame indices: the frame on screen at ``i / fps`` seconds from
    the first frame (half a grid step of tolerance for timestamp rounding). On a constant-rate
    video the map is the identity.
    """
    rel = times - times[0]  # (N,)
    length = int(np.floor(rel[-1] * fps + 0.5)) + 1

    def to_frames(grid: np.ndarray) -> np.ndarray:
        at = np.asarray(grid, dtype=np.float64) / fps + 0.5 / fps
        return np.clip(np.searchsorted(rel, at, side="right") - 1, 0, len(rel) - 1)

    return length, to_frames


def frame_source(reader: VideoReader, decode: DecodeConfig) -> FrameSource:
    """The frame count, rate and frame getter samplers see: the reader's own, or with
    ``sample_by="time"`` the uniform time grid of :func:`time_grid` mapped onto real frames."""
    n, fps = reader.num_frames, reader.fps or None
    to_real: Callable[[np.ndarray], np.ndarray] = lambda idx: idx  # noqa: E731
    length = n
    if decode.sample_by == "time" and fps and n > 1:
        length, to_real = time_grid(reader.frame_times(), fps)
    motion = _flow_getter(reader, to_real) if decode.flow else None
    return FrameSource(
        length, fps, lambda idx: reader.get_frames(to_real(np.asarray(idx)).tolist()), motion
    )


def _flow_getter(
    reader: VideoReader, to_real: Callable[[np.ndarray], np.ndarray]
) -> Callable[[list[int]], torch.Tensor]:
    """Indices -> float (U, H, W, 1) stored-flow magnitude in output pixels; flow ``i`` is the
    motion from frame ``i`` to ``i + 1`` (the last frame reuses the last flow)."""
    get_flow = getattr(reader, "get_flow", None)
    count = int(getattr(reader, "num_flow_frames", 0))
    if get_flow is None or count == 0:
        raise VideoReadError(
            reader.path,
            "data.motion_source=flow needs stored optical flow (a frame folder with x_/y_ JPEGs)",
        )

    def motion(idx: list[int]) -> torch.Tensor:
        flow_idx = np.minimum(to_real(np.asarray(idx)), count - 1)
        flow = get_flow(flow_idx.tolist())  # (U, 2, H, W) pixels
        return flow.square().sum(dim=1).sqrt().unsqueeze(-1)  # (U, H, W, 1)

    return motion
