"""TEG's clips: a long clip and a short clip whose frames are a subset of the long clip's.

TEG (Qian et al., "Exploring Temporal Granularity in Self-Supervised Video Representation
Learning", BMVC 2022, Sec. 3) samples a long clip from a video and a short clip that lies inside
it, and matches each temporal embedding of the short clip to the long clip's embedding of the
same moment. Here the short clip takes ``short_frames`` frames of the long clip, every
``step``-th one, from a random ``offset`` (a position in the long clip), so its frame indices are
``long[offset + step * k]``, ``k = 0 .. short_frames - 1``.

Which long-clip output step covers the same moment as a short-clip output step follows from the
frame indices and the encoder's temporal geometry (its ``temporal_centres``, see
:mod:`ssvrl.backbones.base`): :func:`align_steps` maps each short step's centre to source
frames and picks the long step centred on the same frame. Offsets for which every short step has
a long step at exactly the same centre are :func:`exact_offsets`.

Why the short clip is cut on the device: the objective only sees augmented views, not the frame
indices the sampler drew, so it cannot know a per-sample offset drawn in the data loader.
:class:`SharedClipSampler` therefore decodes the long clip's frames once and hands them out as two
views ("long" and "short"), which are augmented independently; the objective draws each sample's
offset, cuts the short clip out of the "short" view with :func:`cut_short` and aligns it with
:func:`align_steps`, so the alignment is exact and no engine change is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssvrl.data.sampling import TemporalView, clip_indices


@dataclass(frozen=True)
class SubClip:
    """Where the short clip sits in the long one: ``short_frames`` positions ``step`` apart."""

    long_frames: int
    short_frames: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.short_frames < 1 or self.step < 1:
            raise ValueError(f"short_frames and step must be >= 1, got {self}")
        if self.span > self.long_frames:
            raise ValueError(
                f"a short clip of {self.short_frames} frames every {self.step} spans {self.span} "
                f"frames; it must fit in the long clip's {self.long_frames}"
            )

    @property
    def span(self) -> int:
        """Long-clip positions covered by the short clip, first to last inclusive."""
        return (self.short_frames - 1) * self.step + 1

    @property
    def max_offset(self) -> int:
        return self.long_frames - self.span

    def positions(self, offset: int) -> np.ndarray:
        """``(S,)`` long-clip positions of the short clip's frames."""
        if not 0 <= offset <= self.max_offset:
            raise ValueError(f"offset {offset} outside [0, {self.max_offset}]")
        return offset + self.step * np.arange(self.short_frames, dtype=np.int64)

    def short_indices(self, long_idx: np.ndarray, offset: int) -> np.ndarray:
        """``(S,)`` source frame indices of the short clip: a subset of ``long_idx`` (L,)."""
        return np.asarray(long_idx)[self.positions(offset)]


def _centre_frames(idx: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Source frame (float) at input positions ``centres`` of a clip with frame indices ``idx``:
    linear between sampled frames, extrapolated at the clip's ends."""
    idx = np.asarray(idx, dtype=np.float64)
    if len(idx) == 1:
        return np.full(len(centres), idx[0])
    pos = np.arange(len(idx), dtype=np.float64)
    inner = np.interp(centres, pos, idx)
    lo = idx[0] + (centres - 0) * (idx[1] - idx[0])
    hi = idx[-1] + (centres - pos[-1]) * (idx[-1] - idx[-2])
    return np.where(centres < 0, lo, np.where(centres > pos[-1], hi, inner))


def align_steps(
    long_idx: np.ndarray,
    short_idx: np.ndarray,
    long_centres: np.ndarray,
    short_centres: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For each short-clip output step, the long-clip output step at the same moment.

    Args:
        long_idx, short_idx: ``(L,)`` and ``(S,)`` source frame indices of the two clips (the
            short clip's a subset of the long clip's, not looped).
        long_centres, short_centres: ``(T'_L,)`` and ``(T'_S,)`` input positions at the centre
            of each output step (the encoder's ``temporal_centres``).

    Returns:
        ``(match, gap)``: ``(T'_S,)`` int64 long step nearest in time to each short step, and
        ``(T'_S,)`` the distance between the two centres in source frames (0 when exact).
    """
    long_t = _centre_frames(long_idx, np.asarray(long_centres, dtype=np.float64))  # (T'_L,)
    short_t = _centre_frames(short_idx, np.asarray(short_centres, dtype=np.float64))  # (T'_S,)
    dist = np.abs(short_t[:, None] - long_t[None, :])  # (T'_S, T'_L)
    match = dist.argmin(axis=1)
    return match.astype(np.int64), dist[np.arange(len(short_t)), match]


def exact_offsets(
    sub: SubClip, long_centres: np.ndarray, short_centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets (K,), match (K, T'_S))``: the offsets at which every short step lies exactly on
    a long step, and the alignment for each (positions stand in for frame indices: any uniform
    long clip gives the same answer). Empty when no offset is exact."""
    long_pos = np.arange(sub.long_frames)
    offsets, matches = [], []
    for o in range(sub.max_offset + 1):
        match, gap = align_steps(long_pos, sub.positions(o), long_centres, short_centres)
        if np.all(gap < 1e-6):
            offsets.append(o)
            matches.append(match)
    width = len(short_centres)
    return np.asarray(offsets, dtype=np.int64), np.asarray(matches, dtype=np.int64).reshape(
        -1, width
    )


def all_offsets(
    sub: SubClip, long_centres: np.ndarray, short_centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every offset with its nearest-step alignment (``(K,)``, ``(K, T'_S)``)."""
    long_pos = np.arange(sub.long_frames)
    offsets = np.arange(sub.max_offset + 1, dtype=np.int64)
    matches = [
        align_steps(long_pos, sub.positions(int(o)), long_centres, short_centres)[0]
        for o in offsets
    ]
    return offsets, np.stack(matches)


def cut_short(source: torch.Tensor, offsets: torch.Tensor, sub: SubClip) -> torch.Tensor:
    """``(B, C, L, H, W)`` -> ``(B, C, S, H, W)``: each row's short clip at its own offset."""
    B, C, L, H, W = source.shape
    if L != sub.long_frames:
        raise ValueError(f"the short clip's source has {L} frames, expected {sub.long_frames}")
    k = torch.arange(sub.short_frames, device=source.device) * sub.step  # (S,)
    pos = offsets.to(source.device).long()[:, None] + k[None, :]  # (B, S)
    index = pos[:, None, :, None, None].expand(B, C, sub.short_frames, H, W)
    return torch.gather(source, 2, index)  # (B, C, S, H, W)


@dataclass(frozen=True)
class SharedClipSampler:
    """One long clip at a uniform random start, handed out under every view name.

    A :class:`~ssvrl.data.sampling.ClipSampler`: ``views`` all have the long clip's timing; the
    dataset decodes the frames once (the union of identical indices) and each view is augmented
    on its own. Short videos are looped as in :mod:`ssvrl.data.sampling`.
    """

    views: tuple[TemporalView, ...]

    def __post_init__(self) -> None:
        timings = {(v.frames, v.stride, v.fps) for v in self.views}
        if len(timings) != 1:
            raise ValueError(f"SharedClipSampler views must share their timing, got {self.views}")

    def __call__(
        self, num_frames: int, rng: np.random.Generator, fps: float | None = None
    ) -> dict[str, np.ndarray]:
        first = self.views[0]
        start = int(rng.integers(0, max(num_frames - first.span_at(fps), 0) + 1))
        idx = clip_indices(start, first, num_frames, fps)  # (L,)
        return {v.name: idx.copy() for v in self.views}
