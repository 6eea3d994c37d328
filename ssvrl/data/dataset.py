"""Map-style datasets of uint8 clips: one decode per sample, bad videos skipped and counted.

Keys are ``(epoch, index)`` pairs from :class:`ssvrl.data.epoch_sampler.EpochSampler`; every
random draw of a sample (its clips' positions, spatial offsets and the augmentation seeds handed
to the device) comes from one generator seeded by ``(seed, epoch, index)``, so a sample is the
same whatever the number of workers or processes.

The decode settings and the frame source samplers see are in :mod:`ssvrl.data.decoding`; the
test-protocol dataset in :mod:`ssvrl.data.eval_dataset` (both re-exported here).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.decoding import (
    MOTION_SUFFIX,
    Chooser,
    DecodeConfig,
    FrameReadingSampler,
    FrameSource,
    frame_source,
)
from ssvrl.data.decoding import time_grid as time_grid
from ssvrl.data.index import VideoIndex
from ssvrl.data.sampling import ClipSampler
from ssvrl.data.video_reader import VideoReader, VideoReadError, open_video
from ssvrl.data.watchdog import CallTimeout, Watchdog

_BACKEND_MODULES = {"decord": "ssvrl.data._decord_backend", "pyav": "ssvrl.data._pyav_backend"}


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))


def _open(path: Path, decode: DecodeConfig) -> VideoReader:
    return open_video(
        path,
        backend=decode.backend,
        short_side=decode.short_side,
        frame_fps=decode.frame_fps,
        frame_template=decode.frame_template,
        flow_bound=decode.flow_bound,
    )


def read_views(path: Path, choose: Chooser, decode: DecodeConfig) -> dict[str, torch.Tensor]:
    """Open ``path`` once, pick every view's indices with ``choose(num_frames, fps)``, decode
    the union of them ONCE and split it into views.

    Returns ``{view: uint8 (T, H, W, 3)}``. Raises :class:`VideoReadError` for any failure.
    """
    with _open(path, decode) as reader:
        src = frame_source(reader, decode)
        wrapped = {k: v % src.num_frames for k, v in choose(src.num_frames, src.fps).items()}
        union = np.unique(np.concatenate(list(wrapped.values())))  # (U,) sorted
        frames = src.get_frames(union.tolist())  # (U, H, W, 3)
        motion = src.get_motion(union.tolist()) if src.get_motion else None  # (U, H, W, 1)
    pos = {k: torch.from_numpy(np.searchsorted(union, v)) for k, v in wrapped.items()}
    out = {k: frames[p] for k, p in pos.items()}  # each (T, H, W, 3)
    if motion is not None:  # after every view, so views draw their crops first
        out.update({f"{k}{MOTION_SUFFIX}": motion[p] for k, p in pos.items()})  # (T, H, W, 1)
    return out


def read_direct(
    path: Path, reader_fn: Callable[[FrameSource], dict[str, torch.Tensor]], decode: DecodeConfig
) -> dict[str, torch.Tensor]:
    """Open ``path`` once and let ``reader_fn`` decode what it needs from the frame source
    (samplers that look at frames before choosing, e.g. MCL's motion-focused windows)."""
    with _open(path, decode) as reader:
        return reader_fn(frame_source(reader, decode))


def guarded_read(
    watchdog: Watchdog,
    path: Path,
    choose: Chooser,
    decode: DecodeConfig,
    reader_fn: Callable[[FrameSource], dict[str, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`read_views` (or :func:`read_direct` with ``reader_fn``) bounded by ``watchdog``;
    a timeout becomes a VideoReadError.

    The backend library is imported first, outside the deadline: a worker's first import of
    decord or PyAV can take longer than a decode.
    """
    importlib.import_module(_BACKEND_MODULES[decode.backend])
    try:
        if reader_fn is not None:
            return watchdog.call(lambda: read_direct(path, reader_fn, decode))
        return watchdog.call(lambda: read_views(path, choose, decode))
    except CallTimeout:
        raise VideoReadError(path, f"decode timed out after {decode.timeout:g} s") from None


def square_offset(H: int, W: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """Top-left corner of the ``min(H, W)`` square: random, or the centre without ``rng``."""
    S = min(H, W)
    if rng is None:
        return (H - S) // 2, (W - S) // 2
    return int(rng.integers(0, H - S + 1)), int(rng.integers(0, W - S + 1))


def square_crop(
    clip: torch.Tensor,
    rng: np.random.Generator | None,
    offset: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``(T, H, W, C)`` -> ``(C, T, S, S)`` with ``S = min(H, W)``; at ``offset``, else a
    random offset (or the centre without ``rng``)."""
    T, H, W, _ = clip.shape
    S = min(H, W)
    y, x = offset if offset is not None else square_offset(H, W, rng)
    return clip[:, y : y + S, x : x + S].permute(3, 0, 1, 2).contiguous()  # (C, T, S, S)


class PretrainDataset(Dataset):
    """Samples for self-supervised training: ``{"views": {name: uint8 (3, T, S, S)}, ...}``.

    A video that fails to decode (or overruns ``decode.timeout``) is recorded in ``bad``
    (logged once across processes) and a different video, drawn from the same sample
    generator, is used instead. With ``decode.repeats = R > 1`` an item is a list of R samples
    of one video, decoded once; :func:`collate_samples` flattens them into the batch.
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
        self.watchdog = Watchdog(decode.timeout)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any] | list[dict[str, Any]]:
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        rng = sample_rng(self.seed, epoch, idx)
        for _ in range(self.decode.max_retries + 1):
            rec = self.index.records[idx]
            if not self.bad.is_bad(rec.path):
                try:
                    repeats = self._read(rec.path, rng)
                except VideoReadError as err:
                    self.bad.record(rec.path, err.reason)
                else:
                    samples = [self._sample(views, rng, rec.label, idx) for views in repeats]
                    return samples[0] if self.decode.repeats == 1 else samples
            idx = int(rng.integers(0, len(self.index)))
        raise RuntimeError(
            f"{self.decode.max_retries + 1} videos in a row were unreadable (last: "
            f"{self.index.records[idx].path}); see {self.bad.folder}"
        )

    @staticmethod
    def _sample(
        views: dict[str, torch.Tensor], rng: np.random.Generator, label: int, idx: int
    ) -> dict[str, Any]:
        clips = {k: v for k, v in views.items() if not k.endswith(MOTION_SUFFIX)}
        sample = {
            "views": clips,
            "seeds": {k: int(rng.integers(0, 2**62)) for k in clips},
            "label": label,
            "index": idx,
        }
        motion = {k[: -len(MOTION_SUFFIX)]: v for k, v in views.items() if k not in clips}
        if motion:
            sample["motion"] = motion  # {view: float (1, T, S, S)} stored-flow magnitude
        return sample

    def _read(self, path: Path, rng: np.random.Generator) -> list[dict[str, torch.Tensor]]:
        """One decode of ``path``; per repeat ``{view: uint8 (3, T, S, S)}``."""
        R = self.decode.repeats

        def choose(n: int, fps: float | None) -> dict[str, np.ndarray]:
            return {
                f"{r}/{k}": v for r in range(R) for k, v in self.sampler(n, rng, fps).items()
            }

        reader_fn = None
        if isinstance(self.sampler, FrameReadingSampler):

            def reader_fn(src: FrameSource) -> dict[str, torch.Tensor]:
                assert isinstance(self.sampler, FrameReadingSampler)
                return {
                    f"{r}/{k}": v
                    for r in range(R)
                    for k, v in self.sampler.read(src.get_frames, src.num_frames, rng, src.fps)
                    .items()
                }

        clips = guarded_read(self.watchdog, path, choose, self.decode, reader_fn)
        out: list[dict[str, torch.Tensor]] = [{} for _ in range(R)]
        offsets: dict[str, tuple[int, int]] = {}
        for key, clip in clips.items():  # views first, then their "<view>/motion" maps
            r, name = key.split("/", 1)
            if name.endswith(MOTION_SUFFIX):  # the view's own crop: the map stays aligned
                offset = offsets[f"{r}/{name[: -len(MOTION_SUFFIX)]}"]
                out[int(r)][name] = square_crop(clip, None, offset)  # (1, T, S, S) float
            else:
                offsets[key] = square_offset(clip.shape[1], clip.shape[2], rng)
                out[int(r)][name] = square_crop(clip, None, offsets[key])  # (3, T, S, S)
        return out


def collate_samples(items: list[Any]) -> dict[str, Any]:
    """``default_collate`` after flattening repeated samples (lists) into one batch."""
    flat: list[Any] = []
    for item in items:
        flat.extend(item if isinstance(item, list) else [item])
    return default_collate(flat)

