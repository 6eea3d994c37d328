"""Map-style datasets of uint8 clips: one decode per sample, bad videos skipped and counted.

Keys are ``(epoch, index)`` pairs from :class:`ssvrl.data.epoch_sampler.EpochSampler`; every
random draw of a sample (its clips' positions, spatial offsets and the augmentation seeds handed
to the device) comes from one generator seeded by ``(seed, epoch, index)``, so a sample is the
same whatever the number of workers or processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.index import VideoIndex
from ssvrl.data.sampling import ClipSampler, TemporalView, clip_indices, uniform_starts
from ssvrl.data.video_reader import VideoReadError, open_video


@dataclass(frozen=True)
class DecodeConfig:
    """How videos are read: backend, short side after decode, retries for bad videos."""

    backend: Literal["decord", "pyav"] = "decord"
    short_side: int = 128
    max_retries: int = 20


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))


def read_views(
    path: Path, choose: Callable[[int], dict[str, np.ndarray]], decode: DecodeConfig
) -> dict[str, torch.Tensor]:
    """Open ``path`` once, pick every view's indices from its frame count with ``choose``,
    decode the union of them ONCE and split it into views.

    Returns ``{view: uint8 (T, H, W, 3)}``. Raises :class:`VideoReadError` for any failure.
    """
    with open_video(path, backend=decode.backend, short_side=decode.short_side) as reader:
        n = reader.num_frames
        wrapped = {k: v % n for k, v in choose(n).items()}
        union = np.unique(np.concatenate(list(wrapped.values())))  # (U,) sorted
        frames = reader.get_frames(union.tolist())  # (U, H, W, 3)
    pos = {k: torch.from_numpy(np.searchsorted(union, v)) for k, v in wrapped.items()}
    return {k: frames[p] for k, p in pos.items()}  # each (T, H, W, 3)


def square_crop(clip: torch.Tensor, rng: np.random.Generator | None) -> torch.Tensor:
    """``(T, H, W, 3)`` -> ``(3, T, S, S)`` with ``S = min(H, W)``; random offset or centre."""
    T, H, W, _ = clip.shape
    S = min(H, W)
    if rng is None:
        y, x = (H - S) // 2, (W - S) // 2
    else:
        y, x = int(rng.integers(0, H - S + 1)), int(rng.integers(0, W - S + 1))
    return clip[:, y : y + S, x : x + S].permute(3, 0, 1, 2).contiguous()  # (3, T, S, S)


class PretrainDataset(Dataset):
    """Samples for self-supervised training: ``{"views": {name: uint8 (3, T, S, S)}, ...}``.

    A video that fails to decode is recorded in ``bad`` (logged once across processes) and a
    different video, drawn from the same sample generator, is used instead.
    """

    def __init__(
        self,
        index: VideoIndex,
        sampler: ClipSampler,
        decode: DecodeConfig,
        bad: BadVideoLog,
        seed: int = 0,
    ) -> None:
        self.index, self.sampler, self.decode, self.bad, self.seed = (
            index,
            sampler,
            decode,
            bad,
            seed,
        )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        rng = sample_rng(self.seed, epoch, idx)
        for _ in range(self.decode.max_retries + 1):
            rec = self.index.records[idx]
            if not self.bad.is_bad(rec.path):
                try:
                    views = self._read(rec.path, rng)
                    seeds = {k: int(rng.integers(0, 2**62)) for k in views}
                    return {"views": views, "seeds": seeds, "label": rec.label, "index": idx}
                except VideoReadError as err:
                    self.bad.record(rec.path, err.reason)
            idx = int(rng.integers(0, len(self.index)))
        raise RuntimeError(
            f"{self.decode.max_retries + 1} videos in a row were unreadable (last: "
            f"{self.index.records[idx].path}); see {self.bad.folder}"
        )

    def _read(self, path: Path, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        clips = read_views(path, lambda n: self.sampler(n, rng), self.decode)
        return {k: square_crop(c, rng) for k, c in clips.items()}


class EvalClipDataset(Dataset):
    """Test protocol: ``num_clips`` clips spread evenly over each video, centre square.

    Returns ``{"clips": uint8 (K, 3, T, S, S), "label", "index", "valid"}``. An unreadable
    video is recorded and returned with ``valid=False`` (zeros), so the caller can exclude it
    and report it rather than silently substitute another video's label.
    """

    def __init__(
        self,
        index: VideoIndex,
        view: TemporalView,
        num_clips: int,
        decode: DecodeConfig,
        bad: BadVideoLog,
    ) -> None:
        self.index, self.view, self.num_clips, self.decode, self.bad = (
            index,
            view,
            num_clips,
            decode,
            bad,
        )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        rec = self.index.records[idx]
        S, T, K = self.decode.short_side, self.view.frames, self.num_clips
        out = {
            "label": rec.label,
            "index": idx,
            "valid": False,
            "clips": torch.zeros(K, 3, T, S, S, dtype=torch.uint8),
        }
        if self.bad.is_bad(rec.path):
            return out
        try:
            clips = read_views(rec.path, self._choose, self.decode)
        except VideoReadError as err:
            self.bad.record(rec.path, err.reason)
            return out
        out["clips"] = torch.stack([square_crop(clips[str(k)], None) for k in range(K)])
        out["valid"] = True
        return out

    def _choose(self, num_frames: int) -> dict[str, np.ndarray]:
        starts = uniform_starts(num_frames, self.view.span, self.num_clips)
        return {str(k): clip_indices(s, self.view, num_frames) for k, s in enumerate(starts)}
