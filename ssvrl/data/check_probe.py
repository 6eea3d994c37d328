"""The per-video probe of ``ssvrl data check``, run in a worker process per video.

:func:`probe_video` opens a video with the configured backend and short side (as training
opens it), reads its frame count, rate and stored size, and decodes :data:`PROBE_FRAMES`
frames spread over the whole video, the last one included (truncated or damaged files often
fail only mid-stream or at the end). :class:`ProbeJob` and :class:`Probe` are its picklable
input and result. Re-exported by :mod:`ssvrl.data.check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PROBE_FRAMES = 5


@dataclass(frozen=True)
class ProbeJob:
    """What a worker needs to probe one video (picklable)."""

    path: str
    backend: Literal["decord", "pyav"]
    short_side: int | None
    frame_fps: float = 30.0  # frame-folder videos only
    frame_template: str = "img_{:05d}.jpg"


@dataclass(frozen=True)
class Probe:
    """A successful probe: frame count, rate, and the source's size (before any resize)."""

    num_frames: int
    fps: float
    height: int
    width: int
    note: str = ""  # a warning about a readable file


def _probe_indices(num_frames: int, count: int = PROBE_FRAMES) -> list[int]:
    """``count`` frame indices spread evenly from the first to the last frame."""
    if num_frames <= count:
        return list(range(num_frames))
    return sorted({round(k * (num_frames - 1) / (count - 1)) for k in range(count)})


def _header(path: Path) -> tuple[int, int, int] | None:
    """``(height, width, declared frame count or 0)`` from the container header, or None where
    there is no header to read that way (a frame folder, an unreadable header)."""
    if not path.is_file():
        return None
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            return int(ctx.height), int(ctx.width), int(stream.frames or 0)
    except (av.FFmpegError, IndexError, OSError, ValueError):
        return None


def probe_video(job: ProbeJob) -> Probe:
    """Open ``job.path`` as training would and decode frames spread over it, the last included.

    The size reported is the stored one (before the configured resize). A file with clearly
    fewer decodable frames than its header declares (cut short in a copy) still decodes, so it
    keeps its status; :attr:`Probe.note` says so.

    Raises:
        VideoReadError: the file cannot be opened or one of the frames cannot be decoded.
    """
    from ssvrl.data.video_reader import open_video

    path = Path(job.path)
    with open_video(
        path,
        backend=job.backend,
        short_side=job.short_side,
        frame_fps=job.frame_fps,
        frame_template=job.frame_template,
    ) as reader:
        frames = reader.get_frames(_probe_indices(reader.num_frames))
        if frames.shape[0] == 0 or tuple(frames.shape[1:3]) != tuple(reader.size):
            raise ValueError(f"decoded frames of shape {tuple(frames.shape)}")
        header = _header(path)
        height, width, declared = header if header else (*reader.size, 0)
        n = reader.num_frames
        note = ""
        if declared and n < declared - max(2, declared // 100):
            note = f"truncated? the header declares {declared} frames, {n} decode"
        return Probe(n, float(reader.fps), int(height), int(width), note)
