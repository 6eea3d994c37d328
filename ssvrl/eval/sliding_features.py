"""One feature per sliding window of every video, written as ``(num_windows, D)`` arrays.

The TSP use case (Alwassel et al., ICCVW 2021): a frozen clip encoder run over untrimmed videos
at a fixed window stride, one array per video, for temporal action localisation heads (BMN,
G-TAD, ...) to train on. Decoding streams through :class:`~ssvrl.eval.window_stream.
WindowStream` (bounded chunks, one open per video); the backbone runs in eval mode under
``no_grad``; finished arrays are written atomically, so a rerun skips them; a video that cannot
be read is logged once, counted, listed, and the run goes on. Takes plain arguments; the
config-facing entry point is :func:`ssvrl.eval.extract.run_extract`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssvrl.data.dataset import DecodeConfig
from ssvrl.eval.extract_inputs import VideoItem
from ssvrl.eval.extract_output import (
    SUMMARY,
    check_protocol,
    finished_rows,
    load_summary,
    save_atomic,
    write_json,
)
from ssvrl.eval.window_stream import VideoEnd, VideoStart, WindowBatch, WindowStream
from ssvrl.eval.windows import WindowSpec

log = logging.getLogger("ssvrl")

__all__ = ["StreamSettings", "extract_videos"]


@dataclass(frozen=True)
class StreamSettings:
    """How windows are read and batched; none of it changes the features."""

    decode: DecodeConfig
    batch_size: int = 16  # windows per forward pass
    chunk_frames: int = 256  # most frames one decode call reads
    num_workers: int = 0  # DataLoader workers, each streaming its own videos
    dtype: Literal["float32", "float16"] = "float32"  # of the saved arrays


@dataclass
class _Open:
    """A video being extracted: its item, its windows and the features filled so far."""

    item: VideoItem
    start: VideoStart
    feats: np.ndarray  # (W, D) float32
    filled: int = 0


def _identity(item: Any) -> Any:
    return item


def _row(item: VideoItem, start: VideoStart) -> dict[str, Any]:
    return {
        "feature": item.feature.as_posix(),
        "video": str(item.path),
        "num_frames": start.num_frames,
        "fps": start.fps,
        "num_windows": len(start.starts),
        "starts": start.starts.tolist(),
        "start_times": np.round(start.start_times, 6).tolist(),
        "end_times": np.round(start.end_times, 6).tolist(),
    }


@torch.no_grad()
def extract_videos(
    items: Sequence[VideoItem],
    out: Path,
    backbone: nn.Module,
    transform: Callable[[torch.Tensor], torch.Tensor],
    spec: WindowSpec,
    settings: StreamSettings,
    protocol: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out/<item.feature>`` for every item and ``out/extract.json``; return the latter.

    ``transform`` maps uint8 ``(B, 3, T, S, S)`` windows on the backbone's device to its input
    (the probe's eval transform). ``protocol`` describes what the features mean; an ``out``
    made with another protocol raises :class:`~ssvrl.eval.extract_output.ProtocolMismatch`.
    Features already in ``out`` are kept, with their rows from the previous ``extract.json``
    (or, without one, from re-reading the video's header). ``extra`` goes into the JSON as is.
    """
    out.mkdir(parents=True, exist_ok=True)
    previous = load_summary(out)
    check_protocol(previous, protocol, out)
    rows = finished_rows(previous, out)
    todo = [it for it in items if it.feature.as_posix() not in rows]
    summary: dict[str, Any] = {"protocol": protocol, **(extra or {})}
    if previous is None:
        write_json(out / SUMMARY, {**summary, "videos": []})  # claims the folder's protocol
    stream = WindowStream(
        [it.path for it in todo],
        spec,
        settings.decode,
        settings.batch_size,
        settings.chunk_frames,
        skip=[(out / it.feature).is_file() for it in todo],
    )
    counts = {"written": 0, "kept": len(items) - len(todo), "bad": 0, "windows": 0}
    bad: list[dict[str, str]] = []
    tic = time.perf_counter()
    was_training = backbone.training
    backbone.eval()
    try:
        _consume(stream, todo, out, backbone, transform, settings, rows, bad, counts)
    finally:
        backbone.train(was_training)
        seconds = time.perf_counter() - tic
        summary.update(_totals(counts, bad, seconds, rows))
        write_json(out / SUMMARY, summary)
    log.info(
        "extract: %d written, %d already there, %d unreadable; %d windows in %.1f s; %s",
        counts["written"], counts["kept"], counts["bad"], counts["windows"], seconds,
        out / SUMMARY,
    )  # fmt: skip
    return summary


def _totals(
    counts: dict[str, int], bad: list[dict[str, str]], seconds: float, rows: dict[str, Any]
) -> dict[str, Any]:
    return {
        "num_videos": len(rows) + len(bad),
        "num_written": counts["written"],
        "num_kept": counts["kept"],
        "num_bad": len(bad),
        "bad_videos": bad,
        "timing": {
            "seconds": round(seconds, 3),
            "windows": counts["windows"],
            "windows_per_s": round(counts["windows"] / seconds, 2) if seconds > 0 else None,
        },
        "videos": [rows[k] for k in sorted(rows)],
    }


def _consume(
    stream: WindowStream,
    todo: Sequence[VideoItem],
    out: Path,
    backbone: nn.Module,
    transform: Callable[[torch.Tensor], torch.Tensor],
    settings: StreamSettings,
    rows: dict[str, dict[str, Any]],
    bad: list[dict[str, str]],
    counts: dict[str, int],
) -> None:
    """Run the stream's windows through ``backbone`` and write each video when it ends."""
    device = next(backbone.parameters()).device
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=settings.num_workers,
        collate_fn=_identity,
        pin_memory=device.type == "cuda",
    )
    open_: dict[int, _Open] = {}
    dim = int(getattr(backbone, "num_features"))  # noqa: B009  (the backbone contract)
    for msg in loader:
        if isinstance(msg, VideoStart):
            feats = np.zeros((len(msg.starts), dim), dtype=np.float32)  # (W, D)
            open_[msg.video] = _Open(todo[msg.video], msg, feats)
        elif isinstance(msg, WindowBatch):
            state = open_[msg.video]
            x = transform(msg.clips.to(device, non_blocking=True))  # (B, 3, T, crop, crop)
            f = backbone(x).float().cpu().numpy()  # (B, D)
            state.feats[msg.first : msg.first + len(f)] = f
            state.filled += len(f)
            counts["windows"] += len(f)
        elif isinstance(msg, VideoEnd):
            ended = open_.pop(msg.video, None)
            counts[_finish(msg, ended, todo[msg.video], out, settings, rows, bad)] += 1


def _finish(
    end: VideoEnd,
    state: _Open | None,
    item: VideoItem,
    out: Path,
    settings: StreamSettings,
    rows: dict[str, dict[str, Any]],
    bad: list[dict[str, str]],
) -> str:
    """Save a finished video's array (unless it existed) and its row, or record it as bad;
    returns which: ``"written"``, ``"kept"`` or ``"bad"``."""
    if end.error is not None or state is None:
        reason = end.error or "no frames were read"
        log.warning("skipping unreadable video %s: %s", item.path, reason)
        bad.append({"video": str(item.path), "feature": item.feature.as_posix(), "reason": reason})
        return "bad"
    rows[item.feature.as_posix()] = _row(item, state.start)
    target = out / item.feature
    if target.is_file():  # finished by an earlier run; only its row was missing
        return "kept"
    if state.filled != len(state.feats):
        raise RuntimeError(f"{item.path}: {state.filled} of {len(state.feats)} windows read")
    save_atomic(target, state.feats.astype(settings.dtype))  # (W, D)
    return "written"
