"""Frame-folder "videos" for :func:`ssvrl.data.video_reader.open_video` (private).

A frame folder is a directory of JPEGs ``img_00001.jpg, img_00002.jpg, ...`` (mmaction2's
rawframes layout, as written by its ``tools/data/build_rawframes.py``/denseflow), optionally with
optical flow stored as grayscale JPEG pairs ``x_00001.jpg``/``y_00001.jpg``. Frame ``i`` is the
file numbered ``start_index + i``; the frame count is the length of the unbroken run of numbers
from ``start_index``. Folders carry no frame rate, so ``fps`` is given (default 30).

Frames are decoded with Pillow and resized with its bicubic filter to the size
:func:`~ssvrl.data.video_reader.output_size` gives (the rule the video backends use). All frames
of a folder must have the first frame's size.

Flow: denseflow stores each component clipped to ``[-bound, bound]`` pixels and quantised to
0..255 as ``(f + bound) * 255 / (2 bound)``. Here a JPEG value ``v`` reads back exactly as
``(v - 127.5) / 127.5 * flow_bound`` pixels (the same as
:func:`ssvrl.augment.motion.flow_from_uint8`; ``flow_bound`` default 20, denseflow's default).
When frames are resized, each component is also multiplied by the resize factor along its axis,
so flow stays in output pixels.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssvrl.data.video_reader import VideoReader, VideoReadError, output_size

__all__ = ["DEFAULT_TEMPLATE", "FLOW_TEMPLATE", "FrameFolderReader"]

DEFAULT_TEMPLATE = "img_{:05d}.jpg"
FLOW_TEMPLATE = "{}_{:05d}.jpg"  # formatted with "x" or "y", then the frame number
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _run_length(names: set[str], name_of: Callable[[int], str], start: int) -> int:
    """How many consecutive numbers from ``start`` have a file in ``names``."""
    count = 0
    while name_of(start + count) in names:
        count += 1
    return count


class FrameFolderReader(VideoReader):
    """Random access to a folder of JPEG frames; see the module docstring for the conventions."""

    def __init__(
        self,
        path: Path,
        short_side: int | None = None,
        fps: float = 30.0,
        template: str = DEFAULT_TEMPLATE,
        start_index: int = 1,
        flow_template: str = FLOW_TEMPLATE,
        flow_bound: float = 20.0,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        try:
            template.format(start_index), flow_template.format("x", start_index)
        except (IndexError, KeyError, ValueError) as err:
            raise ValueError(f"bad frame name template ({err})") from None
        self.path, self.fps = Path(path), float(fps)
        self._template, self._start = template, start_index
        self._flow_template, self._flow_bound = flow_template, flow_bound
        try:
            names = set(os.listdir(self.path))
        except OSError as err:
            raise VideoReadError(self.path, f"cannot list frame folder ({err.strerror})") from None
        self.num_frames = _run_length(names, template.format, start_index)
        if self.num_frames == 0:
            raise VideoReadError(self.path, f"no frames (expected {template.format(start_index)})")
        self.num_flow_frames = min(
            _run_length(names, functools.partial(flow_template.format, axis), start_index)
            for axis in ("x", "y")
        )
        self._source = self._probe(template.format(start_index))  # (height, width)
        self.size = output_size(*self._source, short_side)
        self._closed = False

    def __enter__(self) -> FrameFolderReader:
        return self

    def _probe(self, name: str) -> tuple[int, int]:
        """``(height, width)`` of one JPEG, from its header."""
        try:
            with Image.open(self.path / name) as image:
                width, height = image.size
        except _IMAGE_ERRORS as err:
            raise VideoReadError(self.path, f"cannot read {name} ({err})") from None
        return height, width

    def _load(self, name: str, mode: str) -> np.ndarray:
        """One JPEG as a uint8 array in ``mode`` ("RGB" or "L") at the output size."""
        try:
            with Image.open(self.path / name) as file:
                if file.format != "JPEG":
                    raise VideoReadError(self.path, f"{name} is not a JPEG ({file.format})")
                if file.size != self._source[::-1]:
                    raise VideoReadError(
                        self.path,
                        f"{name} is {file.size[0]}x{file.size[1]}, the first frame "
                        f"{self._source[1]}x{self._source[0]}",
                    )
                image = file.convert(mode)
            if self.size != self._source:
                image = image.resize(self.size[::-1], Image.Resampling.BICUBIC)
            return np.asarray(image)
        except _IMAGE_ERRORS as err:
            raise VideoReadError(self.path, f"cannot decode {name} ({err})") from None

    def _check_open(self) -> None:
        if self._closed:
            raise VideoReadError(self.path, "reader is closed")

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        self._check_open()
        wanted = self._check_indices(indices)
        if not wanted:
            return torch.empty((0, *self.size, 3), dtype=torch.uint8)
        decoded = {
            i: self._load(self._template.format(self._start + i), "RGB") for i in set(wanted)
        }
        return torch.from_numpy(np.stack([decoded[i] for i in wanted]))  # (T, H, W, 3)

    def get_flow(self, indices: Sequence[int]) -> torch.Tensor:
        """Optical flow at ``indices`` as float32 ``(T, 2, H, W)`` (x then y), in output pixels.

        Indices run over ``0 .. num_flow_frames - 1`` (flow ``i`` is usually the motion from
        frame ``i`` to ``i + 1``); out-of-range indices raise VideoReadError.
        """
        self._check_open()
        wanted = [int(i) for i in indices]
        bad = [i for i in wanted if not 0 <= i < self.num_flow_frames]
        if bad:
            raise VideoReadError(
                self.path, f"flow index {bad[0]} out of range [0, {self.num_flow_frames})"
            )
        height, width = self.size
        gain = np.array([width / self._source[1], height / self._source[0]], dtype=np.float32)
        gain *= self._flow_bound / 127.5
        out = np.empty((len(wanted), 2, height, width), dtype=np.float32)
        for slot, i in enumerate(wanted):
            for axis, name in enumerate("xy"):
                raw = self._load(self._flow_template.format(name, self._start + i), "L")
                out[slot, axis] = (raw.astype(np.float32) - 127.5) * gain[axis]
        return torch.from_numpy(out)

    def close(self) -> None:
        self._closed = True
