"""decord backend of :func:`ssvrl.data.video_reader.open_video` (private).

decord resizes inside its decoder but needs the target width and height up front, so with
``short_side`` the source size is probed first. A PyAV header probe costs ~2 ms against ~11 ms
for opening decord twice (decord only reveals the size by decoding a frame), so PyAV is used
when it is installed. Frames are fetched with one ``get_batch`` on the unique sorted indices,
then gathered back into the requested order, so each distinct frame is decoded once.

Known decord limitation (tests pin it with a strict xfail): random access returns wrong frames
in AVI files with more than one keyframe and in open-GOP files with B-frames (dmlc/decord#195,
#252); sequential reads are right. The PyAV backend is frame-exact on such files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import decord
import numpy as np
import torch

from ssvrl.data.video_reader import VideoReader, VideoReadError, output_size

# decord reports failures as DECORDError or as plain RuntimeError/ValueError from its FFI layer.
_DECORD_ERRORS = (decord.DECORDError, RuntimeError, ValueError, IndexError, OSError)


def _source_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of the video: PyAV header probe, else decode frame 0 with decord."""
    try:
        from ssvrl.data._pyav_backend import probe_size
    except ImportError:
        try:
            height, width, _ = decord.VideoReader(str(path), num_threads=1)[0].shape
        except _DECORD_ERRORS as err:
            raise VideoReadError(path, f"cannot open ({err})") from None
        return int(height), int(width)
    return probe_size(path)


def _to_numpy(batch: Any) -> np.ndarray:
    """decord's native NDArray (default bridge) or a bridged tensor, as a numpy array."""
    if hasattr(batch, "asnumpy"):
        return batch.asnumpy()
    return np.asarray(batch)


class DecordReader(VideoReader):
    """Random access through ``decord.VideoReader`` on CPU."""

    def __init__(self, path: Path, short_side: int | None = None, num_threads: int = 1) -> None:
        self.path = path
        self.size = output_size(*_source_size(path), short_side)
        height, width = self.size if short_side is not None else (-1, -1)
        try:
            self._reader: decord.VideoReader | None = decord.VideoReader(
                str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=num_threads
            )
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
        except _DECORD_ERRORS as err:
            raise VideoReadError(path, f"cannot open ({_short(err)})") from None
        if self.num_frames == 0:
            self.close()
            raise VideoReadError(path, "no video frames")

    def frame_times(self) -> np.ndarray:
        """Start time of each frame from decord's per-frame timestamps (seconds)."""
        if self._reader is None:
            raise VideoReadError(self.path, "reader is closed")
        try:
            stamps = self._reader.get_frame_timestamp(np.arange(self.num_frames))  # (N, 2)
        except _DECORD_ERRORS as err:
            raise VideoReadError(self.path, f"no frame timestamps ({_short(err)})") from None
        start = np.asarray(stamps, dtype=np.float64)[:, 0]  # (N,)
        if not np.isfinite(start).all() or start.min() < -1.0:
            # decord reports AV_NOPTS_VALUE (-2^63 ticks) where the container has no pts (AVI
            # B-frames); fall back to the constant-rate times.
            return super().frame_times()
        return np.maximum.accumulate(start)

    def close(self) -> None:
        self._reader = None  # decord frees the decoder and its threads when collected

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        wanted = self._check_indices(indices)
        if self._reader is None:
            raise VideoReadError(self.path, "reader is closed")
        if not wanted:
            return torch.empty((0, *self.size, 3), dtype=torch.uint8)
        unique = np.unique(np.asarray(wanted, dtype=np.int64))  # sorted
        try:
            batch = _to_numpy(self._reader.get_batch(unique.tolist()))  # (U, H, W, 3)
        except _DECORD_ERRORS as err:
            raise VideoReadError(self.path, f"decoding failed ({_short(err)})") from None
        if batch.shape[1:] != (*self.size, 3):
            raise VideoReadError(
                self.path, f"decoded frames of shape {batch.shape[1:]}, expected {(*self.size, 3)}"
            )
        order = np.searchsorted(unique, wanted)
        return torch.from_numpy(np.ascontiguousarray(batch[order]))  # (T, H, W, 3)


def _short(err: BaseException) -> str:
    """First line of a decord error; its messages carry multi-line C++ stack traces."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
