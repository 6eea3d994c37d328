"""Sliding windows over an untrimmed video: where they start, which frames they read, and how
they are grouped into bounded decode calls.

Temporal action localisation methods consume one feature per window, on a regular grid of window
starts (TSP, Alwassel et al. ICCVW 2021, Sec. 4: clips of fixed length every ``stride`` frames
over the whole untrimmed video). For a video of ``N`` frames, windows of ``frames`` frames taken
every ``stride`` frames span ``span = (frames - 1) * stride + 1`` frames; window starts are the
regular grid ``k * window_stride`` for ``k = 0 .. floor((N - span) / window_stride)`` (every
window inside the video), and the tail, the frames after the last regular window, follows
``tail``:

* ``"align_end"``: one more window starting at ``N - span``, ending on the last frame, when the
  grid does not end there already. Every frame is covered by real frames; the last step is
  shorter than ``window_stride`` (its start time says so).
* ``"pad"``: the grid goes on until a window reaches the last frame (``k <= ceil((N - span) /
  window_stride)``, starts before ``N``); frame indices past the end repeat the last frame. The
  starts stay evenly spaced, as methods that assume a constant feature rate need.
* ``"drop"``: no tail window; the last ``(N - span) % window_stride`` frames have no feature.

A video shorter than one window (``N < span``) gets one window at frame 0 whose indices past the
end repeat the last frame (``"drop"``: no window at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Tail", "WindowSpec", "window_starts", "window_indices", "chunk_groups"]

Tail = Literal["align_end", "pad", "drop"]


@dataclass(frozen=True)
class WindowSpec:
    """``frames`` frames every ``stride`` frames per window; windows every ``window_stride``."""

    frames: int
    stride: int
    window_stride: int
    tail: Tail = "align_end"

    def __post_init__(self) -> None:
        if min(self.frames, self.stride, self.window_stride) < 1:
            raise ValueError(
                f"frames, stride and window_stride must be >= 1, got {self.frames}, "
                f"{self.stride}, {self.window_stride}"
            )
        if self.tail not in ("align_end", "pad", "drop"):
            raise ValueError(f"tail must be align_end, pad or drop, got {self.tail!r}")

    @property
    def span(self) -> int:
        """Frames from a window's first to its last sampled frame, inclusive."""
        return (self.frames - 1) * self.stride + 1


def window_starts(num_frames: int, spec: WindowSpec) -> np.ndarray:
    """``(W,)`` int64 first frame of every window, increasing (formula: module docstring)."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    room, step = num_frames - spec.span, spec.window_stride
    if room < 0:
        return np.zeros(0 if spec.tail == "drop" else 1, dtype=np.int64)
    starts = np.arange(room // step + 1, dtype=np.int64) * step
    if room % step == 0 or spec.tail == "drop":
        return starts
    if spec.tail == "align_end":
        return np.append(starts, np.int64(room))
    last = -(-room // step) * step  # "pad": the first grid start whose window reaches the end
    return np.append(starts, np.int64(last)) if last < num_frames else starts


def window_indices(starts: np.ndarray, num_frames: int, spec: WindowSpec) -> np.ndarray:
    """``(W, frames)`` int64 frame indices of each window, past-the-end ones on the last frame."""
    offsets = np.arange(spec.frames, dtype=np.int64) * spec.stride  # (T,)
    return np.minimum(starts[:, None] + offsets[None, :], num_frames - 1)  # (W, T)


def chunk_groups(indices: np.ndarray, chunk_frames: int) -> list[tuple[int, int]]:
    """Consecutive windows grouped so that each group reads at most ``chunk_frames`` distinct
    frames: ``[(first window, end window), ...]`` covering ``0 .. W`` in order.

    Greedy: a group grows while the union of its windows' frames stays within the bound. One
    window reads at most ``frames`` distinct frames, so any ``chunk_frames >= frames`` works.
    """
    groups: list[tuple[int, int]] = []
    first, held = 0, np.zeros(0, dtype=np.int64)
    for w in range(len(indices)):
        merged = np.union1d(held, indices[w])
        if len(np.unique(indices[w])) > chunk_frames:
            raise ValueError(f"a window reads more than chunk_frames={chunk_frames} frames")
        if len(merged) > chunk_frames:
            groups.append((first, w))
            first, merged = w, np.unique(indices[w])
        held = merged
    if len(indices):
        groups.append((first, len(indices)))
    return groups
