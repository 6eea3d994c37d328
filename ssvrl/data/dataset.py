"""Map-style datasets of uint8 clips: one decode per sample, bad videos skipped and counted.

Keys are ``(epoch, index)`` pairs from :class:`ssvrl.data.epoch_sampler.EpochSampler`; every
random draw of a sample (its clips' positions, spatial offsets and the augmentation seeds handed
to the device) comes from one generator seeded by ``(seed, epoch, index)``, so a sample is the
same whatever the number of workers or processes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.index import VideoIndex
from ssvrl.data.sampling import ClipSampler
from ssvrl.data.video_reader import VideoReader, VideoReadError, open_video
from ssvrl.data.watchdog import CallTimeout, Watchdog


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
_BACKEND_MODULES = {"decord": "ssvrl.data._decord_backend", "pyav": "ssvrl.data._pyav_backend"}

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


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))


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


def _open(path: Path, decode: DecodeConfig) -> VideoReader:
    return open_video(
        path,
        backend=decode.backend,
        short_side=decode.short_side,
        frame_fps=decode.frame_fps,
        frame_template=decode.frame_template,
        flow_bound=decode.flow_bound,
    )


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


# The test-protocol dataset lives in its own file; re-exported for existing imports (placed
# last: eval_dataset imports the helpers above).
from ssvrl.data.eval_dataset import EvalClipDataset as EvalClipDataset  # noqa: E402
