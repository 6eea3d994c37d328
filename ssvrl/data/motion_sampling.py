"""MCL's motion-focused temporal sampling (Li et al., "Motion-Focused Contrastive Learning of
Video Representations", ICCV 2021, Sec. 3.2 "motion-focused video augmentation").

MCL prefers time windows with large motion. Fitted to the host-seeded design, in the worker:

1. :meth:`MotionFocusedSampler.candidates` draws ``K`` candidate windows per view from the
   sample's generator (as :class:`~ssvrl.data.multiview_sampling.MultiViewSampler` draws one);
2. the union of all candidate frames is decoded ONCE (:meth:`MotionFocusedSampler.read`);
3. each candidate is scored by cheap frame differences of its luma, average-pooled to
   ``low_res`` x ``low_res`` (about 1 ms for 4 x 16 frames on one core);
4. :meth:`MotionFocusedSampler.choose`: with probability ``p`` the highest-scoring window,
   otherwise a uniformly random candidate; both draws are always made, so the generator's
   state after a sample does not depend on the video's content.

Everything depends on (seed, epoch, video) only. The spatial half of MCL (a crop over the
high-motion region) runs on the device: :func:`ssvrl.augment.motion_focused_params`.

Wiring: a plain ``__call__`` (the ClipSampler protocol) cannot see frames, so it returns a
random candidate per view (the motion-blind fallback, same draws). A dataset that wants the
motion-focused choice calls :meth:`read` with its reader's ``get_frames`` instead of decoding
the indices itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ssvrl.data.multiview_sampling import ViewTiming, random_start
from ssvrl.data.sampling import TemporalView

GetFrames = Callable[[list[int]], "Tensor | np.ndarray"]  # indices -> uint8 (U, H, W, 3)


def low_res_luma(frames: Tensor | np.ndarray, size: int) -> Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, size, size) luma in [0, 1], area-averaged."""
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float().div_(255)  # (N, 3, H, W)
    luma = x[:, 0] * 0.299 + x[:, 1] * 0.587 + x[:, 2] * 0.114  # (N, H, W)
    return F.adaptive_avg_pool2d(luma[:, None], size)[:, 0]  # (N, size, size)


def window_motion(luma: Tensor) -> Tensor:
    """Mean absolute frame difference per window: (K, T, h, w) -> (K,); 0 when T == 1."""
    if luma.shape[1] < 2:
        return torch.zeros(luma.shape[0])
    return (luma[:, 1:] - luma[:, :-1]).abs().mean(dim=(1, 2, 3))


@dataclass(frozen=True)
class MotionFocusedSampler:
    """``K`` candidate windows per view; the most moving one with probability ``p``."""

    timings: tuple[ViewTiming, ...]
    candidates: int = 4
    p: float = 0.8
    low_res: int = 32

    def __post_init__(self) -> None:
        if self.candidates < 1 or not 0 <= self.p <= 1 or self.low_res < 1:
            raise ValueError(f"invalid MotionFocusedSampler {self}")

    @property
    def views(self) -> tuple[TemporalView, ...]:
        return tuple(t.temporal for t in self.timings)

    def candidate_windows(
        self, num_frames: int, rng: np.random.Generator, fps: float | None = None
    ) -> dict[str, np.ndarray]:
        """``{view: (K, T) int64 indices}``; per view and candidate: a start, then jitter."""
        out = {}
        for t in self.timings:
            rows = []
            for _ in range(self.candidates):
                start = random_start(t.span(fps), num_frames, rng)
                rows.append(t.indices(start, num_frames, fps, rng))
            out[t.name] = np.stack(rows)
        return out

    def choose(
        self, scores: Mapping[str, Tensor | np.ndarray] | None, rng: np.random.Generator
    ) -> dict[str, int]:
        """Per view the chosen candidate: argmax of ``scores[view]`` (K,) with probability
        ``p``, else uniform; ``scores`` None: uniform (the motion-blind fallback)."""
        out = {}
        for t in self.timings:
            u, fallback = float(rng.random()), int(rng.integers(0, self.candidates))
            if scores is None or u >= self.p:
                out[t.name] = fallback
            else:
                out[t.name] = int(np.argmax(np.asarray(scores[t.name])))  # first max wins
        return out

    def __call__(
        self, num_frames: int, rng: np.random.Generator, fps: float | None = None
    ) -> dict[str, np.ndarray]:
        """ClipSampler protocol: a random candidate per view (no frames to score here)."""
        windows = self.candidate_windows(num_frames, rng, fps)
        pick = self.choose(None, rng)
        return {k: w[pick[k]] for k, w in windows.items()}

    def score(self, windows: Mapping[str, np.ndarray], frames: Tensor | np.ndarray,
              union: np.ndarray) -> dict[str, Tensor]:
        """Motion of every candidate: ``frames`` (U, H, W, 3) are the decoded ``union``."""
        luma = low_res_luma(frames, self.low_res)  # (U, s, s)
        return {
            k: window_motion(luma[torch.from_numpy(np.searchsorted(union, w))])  # (K,)
            for k, w in windows.items()
        }

    def read(
        self,
        get_frames: GetFrames,
        num_frames: int,
        rng: np.random.Generator,
        fps: float | None = None,
    ) -> dict[str, Tensor]:
        """Decode all candidates once, keep the chosen window per view: ``{view: uint8
        (T, H, W, 3)}``. ``get_frames`` maps sorted unique indices to their frames."""
        windows = self.candidate_windows(num_frames, rng, fps)
        union = np.unique(np.concatenate([w.ravel() for w in windows.values()]))  # (U,)
        frames = torch.as_tensor(get_frames(union.tolist()))  # (U, H, W, 3)
        pick = self.choose(self.score(windows, frames, union), rng)
        return {
            k: frames[torch.from_numpy(np.searchsorted(union, w[pick[k]]))]  # (T, H, W, 3)
            for k, w in windows.items()
        }
