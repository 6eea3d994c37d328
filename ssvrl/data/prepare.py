"""``ssvrl data prepare``: re-encode a whole dataset tree for fast, frame-exact random access.

Every video under ``src`` (by extension, see :data:`ssvrl.data.encode.DEFAULT_CODECS`) is
re-encoded into the same relative path under ``dst`` (:func:`ssvrl.data.encode.transcode`:
short side, keyframe interval, no B-frames, audio dropped); every other file (split lists,
CSVs, label maps) is copied unchanged, so annotation files written for ``src`` index ``dst``.

Resumable: each output is written to a hidden temporary name next to it and renamed into place
when complete, so a killed run never leaves a truncated video under a real name. The manifest
``dst/.ssvrl_prepare.json`` records, per video, the source's size and mtime and the encoding
settings; a rerun skips videos whose entry matches and whose output exists, and re-encodes the
rest (new or changed sources, changed settings, outputs lost in a kill). It is saved atomically
every few seconds and at the end. Copied files are skipped when size and mtime already match.

A source that fails to decode is reported with its reason and skipped; the run goes on. Each
video gets ``timeout`` seconds (a decoder hang kills its worker, see
:mod:`ssvrl.data.probe_pool`).

The files (walk, temporary names, manifest, copies) are handled in
:mod:`ssvrl.data.prepare_files`, the summary and progress line in
:mod:`ssvrl.data.prepare_report`; both re-exported here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssvrl.data.encode import EncodeResult, EncodeSettings, transcode
from ssvrl.data.prepare_files import (
    MANIFEST,
    _copy,
    _is_done,
    _load_manifest,
    _save_manifest,
    _source_key,
    _walk,
    check_paths,
    temp_path,
)
from ssvrl.data.prepare_report import PrepareSummary, _Progress, format_summary
from ssvrl.data.probe_pool import imap_bounded

__all__ = [
    "MANIFEST",
    "PrepareSummary",
    "check_paths",
    "format_summary",
    "prepare_dataset",
    "temp_path",
]

_SAVE_EVERY_S = 5.0


@dataclass(frozen=True)
class EncodeJob:
    """One video to re-encode (picklable, sent to a worker)."""

    rel: str
    src: str
    dst: str
    codec: str
    settings: EncodeSettings


def encode_job(job: EncodeJob) -> EncodeResult:
    """Worker task: transcode into the temporary name, then rename it into place."""
    dst = Path(job.dst)
    tmp = temp_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = transcode(Path(job.src), tmp, job.codec, job.settings)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result


def _reason(job: EncodeJob, error: str | None) -> str:
    """The failure reason without the exception type and path the worker put in front."""
    text = error or "unknown error"
    for prefix in ("EncodeError: ", f"{job.src}: "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text

def prepare_dataset(
    src: str | Path,
    dst: str | Path,
    settings: EncodeSettings | None = None,
    *,
    workers: int | None = None,
    timeout: float | None = 600.0,
    progress: bool = True,
) -> PrepareSummary:
    """Re-encode every video under ``src`` into ``dst`` and copy every other file.

    Args:
        src: dataset folder to read (never modified).
        dst: output folder (created); may hold a previous, possibly interrupted, run.
        settings: encoding settings (default :class:`EncodeSettings`).
        workers: encoding processes (default: CPU count).
        timeout: seconds per video before its worker is killed and the video counted failed.
        progress: print a progress line on stderr.

    Raises:
        ValueError: ``src`` is not a folder, or ``src`` and ``dst`` overlap.
    """
    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    settings = settings or EncodeSettings()
    check_paths(src, dst)
    dst.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(dst)
    summary = PrepareSummary()
    jobs: list[EncodeJob] = []
    for rel in _walk(src):
        s, d = src / rel, dst / rel
        codec = settings.codec_for(s)
        if codec is None:
            if _copy(s, d):
                summary.copied += 1
            else:
                summary.copies_skipped += 1
            continue
        summary.videos += 1
        if _is_done(manifest.get(rel), s, d, settings.key(codec)):
            summary.skipped += 1
        else:
            jobs.append(EncodeJob(rel, str(s), str(d), codec, settings))
    bar = _Progress(len(jobs), progress)
    saved = time.perf_counter()
    try:
        outcomes = imap_bounded(encode_job, jobs, workers=workers, timeout=timeout)
        for done, outcome in enumerate(outcomes, 1):
            job = jobs[outcome.index]
            if outcome.ok and outcome.value is not None:
                _record(manifest, summary, job, outcome.value)
            else:
                temp_path(Path(job.dst)).unlink(missing_ok=True)  # a killed worker's leftovers
                manifest.pop(job.rel, None)
                summary.failed.append((job.rel, _reason(job, outcome.error)))
            bar.update(done, force=done == len(jobs))
            if time.perf_counter() - saved > _SAVE_EVERY_S:
                _save_manifest(dst, manifest)
                saved = time.perf_counter()
    finally:
        _save_manifest(dst, manifest)
    summary.seconds = time.perf_counter() - start
    return summary


def _record(
    manifest: dict[str, Any], summary: PrepareSummary, job: EncodeJob, result: EncodeResult
) -> None:
    """Book a finished video into the manifest and the summary."""
    src = Path(job.src)
    manifest[job.rel] = {
        **_source_key(src),
        "settings": job.settings.key(job.codec),
        "frames": result.frames,
        "fps": result.fps,
        "size": list(result.size),
    }
    summary.encoded += 1
    summary.bytes_in += src.stat().st_size
    summary.bytes_out += Path(job.dst).stat().st_size
    if result.warning:
        summary.warnings.append((job.rel, result.warning))
