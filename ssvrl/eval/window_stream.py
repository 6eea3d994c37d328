"""Stream the sliding windows of many untrimmed videos as bounded uint8 batches.

Each video is opened once and read front to back in chunks: consecutive windows are grouped so
that a group needs at most ``chunk_frames`` distinct frames (:func:`~ssvrl.eval.windows.
chunk_groups`); frames shared with the previous group are kept rather than decoded again, so
one decode call reads at most ``chunk_frames`` frames and at most one chunk of frames is held
between calls (about three while a group is assembled: the previous group, the fresh decode
and the merged group), whatever the video's length (hour-long videos of temporal localisation
datasets; TSP, Alwassel et al. 2021). Reading forward also keeps decoders on their sequential path.

:class:`WindowStream` is an ``IterableDataset``: with DataLoader workers, worker ``k`` takes
videos ``k, k + n, ...``. It yields, per video, a :class:`VideoStart` (frame count, rate, window
starts), :class:`WindowBatch` items in window order (none when ``skip``), then a
:class:`VideoEnd` that carries the failure reason when the video could not be read to the end.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ssvrl.data.dataset import DecodeConfig, square_crop
from ssvrl.data.video_reader import VideoReader, VideoReadError, open_video
from ssvrl.data.watchdog import CallTimeout, Watchdog
from ssvrl.eval.windows import WindowSpec, chunk_groups, window_indices, window_starts

__all__ = ["VideoStart", "WindowBatch", "VideoEnd", "WindowStream"]


@dataclass
class VideoStart:
    """A video was opened: ``starts`` (W,) first frame of each window; ``start_times`` and
    ``end_times`` (W,) seconds from the first frame to the window's first and last frame."""

    video: int
    num_frames: int
    fps: float
    starts: np.ndarray
    start_times: np.ndarray
    end_times: np.ndarray


@dataclass
class WindowBatch:
    """Windows ``first .. first + B - 1`` of a video: uint8 ``(B, 3, T, S, S)`` centre squares."""

    video: int
    first: int
    clips: torch.Tensor


@dataclass
class VideoEnd:
    """The video is done; ``error`` is the reason when it could not be read."""

    video: int
    error: str | None = None


Item = VideoStart | WindowBatch | VideoEnd


class WindowStream(IterableDataset):
    """Windows of ``paths`` in bounded batches; see the module docstring.

    Args:
        paths: video files or frame folders.
        spec: window length, strides and tail rule.
        decode: backend, ``short_side`` and the per-call ``timeout`` (a stuck decoder makes
            the video bad instead of hanging the run).
        batch_size: windows per :class:`WindowBatch` (the last of a video may be smaller).
        chunk_frames: most frames one decode call reads; at least ``spec.frames``.
        skip: per path, True to report only its :class:`VideoStart` (features already exist).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        spec: WindowSpec,
        decode: DecodeConfig,
        batch_size: int,
        chunk_frames: int,
        skip: Sequence[bool] | None = None,
    ) -> None:
        if chunk_frames < spec.frames:
            raise ValueError(f"chunk_frames={chunk_frames} is below the window's {spec.frames}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.paths, self.spec, self.decode = list(paths), spec, decode
        self.batch_size, self.chunk_frames = batch_size, chunk_frames
        self.skip = list(skip) if skip is not None else [False] * len(self.paths)

    def __iter__(self) -> Iterator[Item]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        watchdog = Watchdog(self.decode.timeout)
        for video in range(worker, len(self.paths), workers):
            yield from self._video(video, watchdog)

    def _open(self, path: Path) -> VideoReader:
        d = self.decode
        return open_video(
            path,
            backend=d.backend,
            short_side=d.short_side,
            frame_fps=d.frame_fps,
            frame_template=d.frame_template,
            flow_bound=d.flow_bound,
        )

    def _video(self, video: int, watchdog: Watchdog) -> Iterator[Item]:
        """Every item of one video; a read failure ends it with ``VideoEnd(error=...)``."""
        reader: VideoReader | None = None
        try:
            reader = watchdog.call(functools.partial(self._open, self.paths[video]))
            start = self._start(video, reader, watchdog)
            yield start
            if not self.skip[video]:
                yield from self._batches(video, reader, watchdog, start.num_frames)
        except VideoReadError as err:
            yield VideoEnd(video, err.reason)
        except CallTimeout:
            reader = None  # still in use by the abandoned decode thread: leave it alone
            yield VideoEnd(video, f"decode timed out after {self.decode.timeout:g} s")
        else:
            yield VideoEnd(video)
        finally:
            if reader is not None:
                reader.close()

    def _start(self, video: int, reader: VideoReader, watchdog: Watchdog) -> VideoStart:
        n = reader.num_frames
        starts = window_starts(n, self.spec)  # (W,)
        times = watchdog.call(reader.frame_times)  # (N,) seconds
        times = times - times[0]
        last = np.minimum(starts + self.spec.span - 1, n - 1)
        return VideoStart(video, n, float(reader.fps), starts, times[starts], times[last])

    def _batches(
        self, video: int, reader: VideoReader, watchdog: Watchdog, num_frames: int
    ) -> Iterator[WindowBatch]:
        """Decode group by group, keeping frames the next group shares, and cut batches."""
        indices = window_indices(window_starts(num_frames, self.spec), num_frames, self.spec)
        held_idx = np.zeros(0, dtype=np.int64)  # (U,) sorted frame numbers held
        held: torch.Tensor | None = None  # (U, H, W, 3) uint8
        pending: list[torch.Tensor] = []
        first = 0
        for a, b in chunk_groups(indices, self.chunk_frames):
            need = np.unique(indices[a:b])  # (U',) sorted
            keep = np.isin(held_idx, need)
            new = np.setdiff1d(need, held_idx)
            if len(new) or held is None:
                fresh = watchdog.call(functools.partial(reader.get_frames, new.tolist()))
            else:  # every frame of the group is held already
                fresh = held[:0]
            merged = fresh.new_empty((len(need), *fresh.shape[1:]))  # (U', H, W, 3)
            merged[torch.from_numpy(np.searchsorted(need, new))] = fresh
            if held is not None and keep.any():
                at = torch.from_numpy(np.searchsorted(need, held_idx[keep]))
                merged[at] = held[torch.from_numpy(keep)]
            held_idx, held = need, merged
            for w in range(a, b):
                pos = torch.from_numpy(np.searchsorted(held_idx, indices[w]))
                pending.append(square_crop(held[pos], None))  # (3, T, S, S)
                if len(pending) == self.batch_size:
                    yield WindowBatch(video, first, torch.stack(pending))  # (B, 3, T, S, S)
                    first, pending = first + len(pending), []
        if pending:
            yield WindowBatch(video, first, torch.stack(pending))
