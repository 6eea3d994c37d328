"""Re-encode one video with PyAV for fast, frame-exact random access (used by ``data prepare``).

The output keeps every decoded frame, in order, at the source's average frame rate (constant
rate: a variable-rate source gets even timestamps), scaled so that its shorter side is
``short_side`` (never upscaled; both sides rounded to even numbers, as 4:2:0 chroma needs),
with a keyframe every ``gop`` frames and no B-frames, so a seek decodes at most ``gop - 1``
frames and decoders agree on frame numbering. Only the first video stream is kept; audio,
subtitles and metadata are dropped.

Codecs follow the file extension, so the container stays what its name says:

=========================  ===============  ==================================================
extension                  codec            settings
=========================  ===============  ==================================================
.mp4 .m4v .mkv .mov        libx264          yuv420p, CRF ``crf`` (23), preset veryfast
.avi                       mpeg4            qscale 3 (about XVID quality)
.webm                      libvpx-vp9       CRF 32, realtime speed 8, no alt-ref frames
=========================  ===============  ==================================================

Measured with decord: H.264 without B-frames in AVI still seeks to wrong frames (decord reads
AVI timestamps as packet counts), MPEG-4 Part 2 in AVI without B-frames seeks exactly, hence
mpeg4 for .avi. Frames are streamed one at a time: memory does not grow with video length.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_CODECS",
    "EncodeError",
    "EncodeSettings",
    "EncodeResult",
    "target_size",
    "transcode",
]

DEFAULT_CODECS: Mapping[str, str] = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mkv": "libx264",
    ".mov": "libx264",
    ".avi": "mpeg4",
    ".webm": "libvpx-vp9",
}
# Codecs allowed per container (what FFmpeg's muxer accepts and decoders read back).
CONTAINER_CODECS: Mapping[str, frozenset[str]] = {
    ".mp4": frozenset({"libx264", "mpeg4"}),
    ".m4v": frozenset({"libx264", "mpeg4"}),
    ".mov": frozenset({"libx264", "mpeg4"}),
    ".mkv": frozenset({"libx264", "mpeg4", "libvpx-vp9", "libvpx"}),
    ".avi": frozenset({"mpeg4", "libx264"}),
    ".webm": frozenset({"libvpx-vp9", "libvpx"}),
}
_MPEG4_QSCALE = 3
_VPX_CRF = 32
_MAX_TIME_BASE_DEN = 65535  # MPEG-4 Part 2 stores the time base in 16 bits


class EncodeError(RuntimeError):
    """A source could not be decoded or the output not encoded; names the file and reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class EncodeSettings:
    """How videos are re-encoded; :meth:`key` goes into the manifest (a change re-encodes)."""

    short_side: int = 128
    gop: int = 16
    crf: int = 23  # libx264 only
    codecs: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CODECS))
    threads: int = 1  # codec threads per process; parallelism comes from worker processes

    def __post_init__(self) -> None:
        if self.short_side < 2:
            raise ValueError(f"short_side must be >= 2, got {self.short_side}")
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        for ext, codec in self.codecs.items():
            allowed = CONTAINER_CODECS.get(ext)
            if allowed is None:
                raise ValueError(
                    f"unsupported video extension {ext!r}; known: "
                    f"{', '.join(sorted(CONTAINER_CODECS))}"
                )
            if codec not in allowed:
                raise ValueError(
                    f"codec {codec!r} cannot go in {ext} files; use one of "
                    f"{', '.join(sorted(allowed))}"
                )

    def codec_for(self, path: Path) -> str | None:
        """The codec for ``path``'s extension (case-insensitive); None for non-video files."""
        return self.codecs.get(path.suffix.lower())

    def key(self, codec: str) -> dict[str, Any]:
        """Everything that determines the output of a file encoded with ``codec``."""
        return {
            "short_side": self.short_side,
            "gop": self.gop,
            "codec": codec,
            "crf": self.crf if codec == "libx264" else None,
            "version": 1,
        }


@dataclass(frozen=True)
class EncodeResult:
    """What one transcode did."""

    frames: int
    fps: float
    source_size: tuple[int, int]  # (height, width)
    size: tuple[int, int]
    seconds: float
    warning: str = ""


def target_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` with the shorter side ``min(short_side, current)``, aspect kept,
    both even (rounded to the nearest even number, at least 2)."""
    scale = min(1.0, short_side / min(height, width))

    def even(x: float) -> int:
        return max(2, 2 * round(x / 2))

    return even(height * scale), even(width * scale)


def _add_stream(out: Any, codec: str, rate: Fraction, settings: EncodeSettings) -> Any:
    """The output video stream with the codec's options for fast random access."""
    stream = out.add_stream(codec, rate=rate)
    ctx = stream.codec_context
    ctx.gop_size = settings.gop
    ctx.max_b_frames = 0
    ctx.thread_count = settings.threads
    if codec == "libx264":
        g = settings.gop
        ctx.options = {
            "crf": str(settings.crf),
            "preset": "veryfast",
            "x264-params": f"keyint={g}:min-keyint={g}:scenecut=0:bframes=0",
        }
    elif codec == "mpeg4":
        ctx.options = {
            "flags": "+qscale",
            "global_quality": str(_MPEG4_QSCALE * 118),  # FF_QP2LAMBDA * q
            "sc_threshold": "1000000000",  # no extra scene-cut keyframes: a regular GOP
        }
    else:  # libvpx-vp9 / libvpx
        ctx.options = {
            "crf": str(_VPX_CRF),
            "b": "0",
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",  # hidden alt-ref frames would act like B-frames
            "keyint_min": str(settings.gop),
        }
    stream.pix_fmt = "yuv420p"
    return stream


def _frame_rate(stream: Any, path: Path) -> Fraction:
    """The source's average rate as an exact fraction with a small denominator."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise EncodeError(path, "the video stream has no frame rate")
    return Fraction(rate).limit_denominator(_MAX_TIME_BASE_DEN)


def transcode(src: Path, dst: Path, codec: str, settings: EncodeSettings) -> EncodeResult:
    """Decode ``src`` frame by frame and encode it into ``dst`` (overwritten) with ``codec``.

    Raises:
        EncodeError: ``src`` has no video stream or no frames, or decoding/encoding failed.
    """
    import av
    from av.video.frame import PictureType
    from av.video.reformatter import VideoReformatter

    start = time.perf_counter()
    try:
        source = av.open(str(src))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise EncodeError(src, f"cannot open ({err})") from None
    try:
        with source, av.open(str(dst), "w") as out:
            if not source.streams.video:
                raise EncodeError(src, "no video stream")
            ins = source.streams.video[0]
            ins.thread_type = "AUTO"
            ins.codec_context.thread_count = settings.threads
            in_h, in_w = ins.codec_context.height, ins.codec_context.width
            if in_h <= 0 or in_w <= 0:
                raise EncodeError(src, "the video stream has no frame size")
            rate = _frame_rate(ins, src)
            height, width = target_size(in_h, in_w, settings.short_side)
            stream = _add_stream(out, codec, rate, settings)
            stream.width, stream.height = width, height
            scaler = VideoReformatter()
            count = 0
            for frame in source.decode(ins):
                small = scaler.reformat(
                    frame, width=width, height=height, format="yuv420p", interpolation="BICUBIC"
                )
                small.pts, small.time_base = count, 1 / rate
                small.pict_type = PictureType.NONE  # let the encoder place keyframes
                out.mux(stream.encode(small))
                count += 1
            if count == 0:
                raise EncodeError(src, "no video frames")
            out.mux(stream.encode())
            declared = int(ins.frames or 0)
    except EncodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        raise EncodeError(src, f"transcoding failed ({err})") from None
    warning = ""
    if declared and abs(declared - count) > max(2, declared // 100):
        warning = f"decoded {count} frames, the header declares {declared}"
    return EncodeResult(
        count, float(rate), (in_h, in_w), (height, width), time.perf_counter() - start, warning
    )
