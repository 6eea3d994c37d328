"""Random-access video decoding behind one small interface, with decord or PyAV underneath.

This module and its private backends ``_decord_backend`` and ``_pyav_backend`` are where ssvrl
decodes videos, so every decoder failure becomes a :class:`VideoReadError` here and the rest of
the code base never sees a library exception.

Backends are imported lazily inside :func:`open_video`: importing this module opens no file and
starts no thread, which matters because readers are created inside forked DataLoader workers.

Resizing: with ``short_side=S`` the shorter side of the output is exactly ``S`` and the longer
side is ``round(long * S / short)`` (nearest integer, at least 1), aspect ratio kept. PyAV
scales with swscale's bicubic filter, the one whose output is closest to decord's (measured).

Backend choice: decord's random access is wrong on AVI files with several keyframes and on
open-GOP files with B-frames (see ``_decord_backend``); ``"pyav"`` is frame-exact on those.
"""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import torch

__all__ = ["VideoReadError", "VideoReader", "open_video", "available_backends", "output_size"]

Backend = Literal["decord", "pyav"]
_MODULE_OF_BACKEND: dict[str, str] = {"decord": "decord", "pyav": "av"}


class VideoReadError(RuntimeError):
    """A video could not be opened or decoded; names the file and a short reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        """Pickle with both arguments so the error survives the trip back from a worker."""
        return (type(self), (self.path, self.reason))


class VideoReader(abc.ABC):
    """An open video: frame count, rate, output size, and random access to RGB frames.

    Attributes:
        path: the file that was opened.
        num_frames: number of decodable frames; valid indices are ``0 .. num_frames - 1``.
        fps: average frame rate reported by the container.
        size: ``(height, width)`` of the frames returned by :meth:`get_frames` (after resize).
    """

    path: Path
    num_frames: int
    fps: float
    size: tuple[int, int]

    @abc.abstractmethod
    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Decode the frames at ``indices`` as a uint8 ``(T, H, W, 3)`` RGB tensor.

        Indices come back in the order given; repeats and unsorted indices are allowed and each
        distinct frame is decoded once. Negative or too-large indices raise VideoReadError.
        """

    def frame_times(self) -> np.ndarray:
        """``(num_frames,)`` float64 presentation time of each frame in seconds, increasing.

        Backends read them from the container (variable frame rate files have uneven gaps);
        this default assumes a constant rate (``i / fps``, or ``i`` when the rate is unknown).
        """
        return np.arange(self.num_frames, dtype=np.float64) / (self.fps or 1.0)

    @abc.abstractmethod
    def close(self) -> None:
        """Release the decoder and the file; later :meth:`get_frames` calls raise."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, num_frames={self.num_frames}, "
            f"fps={self.fps:.3f}, size={self.size})"
        )

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        """Return ``indices`` as plain ints, raising VideoReadError for any out of range."""
        wanted = [int(i) for i in indices]
        bad = [i for i in wanted if not 0 <= i < self.num_frames]
        if bad:
            raise VideoReadError(
                self.path, f"frame index {bad[0]} out of range [0, {self.num_frames})"
            )
        return wanted


def output_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """``(height, width)`` after scaling so that ``min(height, width) == short_side``.

    The longer side is rounded to the nearest integer; ``None`` keeps the size unchanged.
    """
    if short_side is None:
        return height, width
    if short_side <= 0:
        raise ValueError(f"short_side must be positive, got {short_side}")
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def available_backends() -> list[str]:
    """Names of the backends whose library is installed, in order of preference."""
    return [
        name
        for name, module in _MODULE_OF_BACKEND.items()
        if importlib.util.find_spec(module) is not None
    ]


def _check_file(path: Path) -> None:
    """Fail fast, with a clear reason, on paths no decoder could read."""
    if not path.exists():
        raise VideoReadError(path, "file not found")
    if not path.is_file():
        raise VideoReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "empty file")


def open_video(
    path: str | Path,
    backend: Backend = "decord",
    short_side: int | None = None,
    num_threads: int = 1,
    *,
    frame_fps: float = 30.0,
    frame_template: str = "img_{:05d}.jpg",
    flow_bound: float = 20.0,
) -> VideoReader:
    """Open ``path`` for random frame access with the chosen backend.

    A directory is read as a frame folder (``_frames_backend.FrameFolderReader``: JPEGs named
    by ``frame_template`` from 1, rate ``frame_fps``) whatever ``backend`` says.

    Args:
        path: video file (any container/codec FFmpeg reads) or frame folder.
        backend: ``"decord"`` (fast batched seeks) or ``"pyav"`` (pure FFmpeg bindings).
        short_side: if given, frames are resized on decode so their shorter side equals it.
        num_threads: decoder threads per reader (1 suits many DataLoader workers).
        frame_fps: frame rate reported for frame folders (they store none).
        frame_template: file name of frame ``n`` (1-based) in a frame folder.
        flow_bound: pixels of the flow JPEGs' full range in a frame folder (denseflow's bound).

    Raises:
        VideoReadError: missing, empty, unreadable file, no video stream, or a frame folder
            without frames.
        ValueError: unknown or uninstalled backend, or a non-positive ``short_side``.
    """
    path = Path(path)
    if backend not in _MODULE_OF_BACKEND:
        choices = " or ".join(_MODULE_OF_BACKEND)
        raise ValueError(f"unknown video backend {backend!r}; use {choices}")
    output_size(1, 1, short_side)  # validates short_side before touching the file
    if path.is_dir():
        from ssvrl.data._frames_backend import FrameFolderReader

        return FrameFolderReader(
            path, short_side, fps=frame_fps, template=frame_template, flow_bound=flow_bound
        )
    if backend not in available_backends():
        raise ValueError(f"video backend {backend!r} is not installed")
    _check_file(path)
    if backend == "decord":
        from ssvrl.data._decord_backend import DecordReader

        return DecordReader(path, short_side=short_side, num_threads=num_threads)
    from ssvrl.data._pyav_backend import PyAVReader

    return PyAVReader(path, short_side=short_side, num_threads=num_threads)
