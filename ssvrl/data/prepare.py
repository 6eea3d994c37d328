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
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssvrl.data.encode import EncodeResult, EncodeSettings, transcode
from ssvrl.data.probe_pool import imap_bounded

__all__ = [
    "MANIFEST",
    "PrepareSummary",
    "check_paths",
    "format_summary",
    "prepare_dataset",
    "temp_path",
]

MANIFEST = ".ssvrl_prepare.json"
_SKIP_DIRS = frozenset({".ssvrl_cache"})  # the index cache of `ssvrl data check`
_PART = ".part"
_SAVE_EVERY_S = 5.0


@dataclass(frozen=True)
class EncodeJob:
    """One video to re-encode (picklable, sent to a worker)."""

    rel: str
    src: str
    dst: str
    codec: str
    settings: EncodeSettings


@dataclass
class PrepareSummary:
    """What a run did; ``failed`` and ``warnings`` hold ``(relative path, reason)``."""

    videos: int = 0
    encoded: int = 0
    skipped: int = 0
    copied: int = 0
    copies_skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    bytes_in: int = 0  # sources of the videos encoded in this run
    bytes_out: int = 0  # their outputs


def temp_path(dst: Path) -> Path:
    """The hidden name an output is written under before the atomic rename: ``.NAME.part.EXT``
    (the extension stays last so the muxer still picks the container from it)."""
    return dst.with_name(f".{dst.name}{_PART}{dst.suffix}")


def _walk(src: Path) -> Iterator[str]:
    """Relative paths (``/``-separated) of every file under ``src``, sorted, skipping our own
    bookkeeping (manifest, temporaries, index cache)."""
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(folder, name), src).replace(os.sep, "/")
            if rel == MANIFEST or (name.startswith(".") and _PART in name):
                continue
            yield rel


def check_paths(src: Path, dst: Path) -> None:
    """Raise ValueError unless ``src`` is a folder and ``dst`` neither equals nor overlaps it
    (walking the source would otherwise meet the outputs)."""
    if not src.is_dir():
        raise ValueError(f"source folder not found: {src}")
    s, d = src.resolve(), dst.resolve()
    if s == d or s in d.parents or d in s.parents:
        raise ValueError(f"source {src} and destination {dst} must not contain each other")


def _load_manifest(dst: Path) -> dict[str, Any]:
    """The manifest's per-video entries; empty when absent or unreadable."""
    try:
        payload = json.loads((dst / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    files = payload.get("files") if isinstance(payload, dict) else None
    return files if isinstance(files, dict) else {}


def _save_manifest(dst: Path, files: dict[str, Any]) -> None:
    """Write the manifest atomically (temporary file + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=".ssvrl_prepare-", suffix=".tmp", dir=dst)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "files": files}, f, indent=0, sort_keys=True)
        os.replace(tmp, dst / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _source_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _is_done(entry: Any, src: Path, dst: Path, settings_key: dict[str, Any]) -> bool:
    """The manifest entry matches the source and settings, and the output exists."""
    if not isinstance(entry, dict) or entry.get("settings") != settings_key:
        return False
    key = _source_key(src)
    return all(entry.get(k) == v for k, v in key.items()) and dst.is_file()


def _copy(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` (atomically, mtime kept) unless size and mtime already match."""
    s = src.stat()
    try:
        d = dst.stat()
        if d.st_size == s.st_size and d.st_mtime_ns == s.st_mtime_ns:
            return False
    except FileNotFoundError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True


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


class _Progress:
    """``done/total, rate, ETA`` on stderr at most every 2 s (``\\r``-updated on a terminal)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.start = self.last = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < 2.0):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        line = f"prepare: {done}/{self.total} videos, {rate:.1f}/s, ETA {_duration(eta)}"
        end = "\n" if force or not self.tty else ""
        print(("\r" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


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


def format_summary(summary: PrepareSummary, max_listed: int = 20) -> str:
    """The lines printed at the end of ``ssvrl data prepare``."""
    lines = [
        f"videos: {summary.videos} ({summary.encoded} encoded, {summary.skipped} already done, "
        f"{len(summary.failed)} failed); other files: {summary.copied} copied, "
        f"{summary.copies_skipped} unchanged; {summary.seconds:.1f} s",
    ]
    if summary.encoded:
        rate = summary.encoded / max(summary.seconds, 1e-9)
        ratio = summary.bytes_out / max(summary.bytes_in, 1)
        lines.append(
            f"encoded {summary.bytes_in / 1e6:.1f} MB -> {summary.bytes_out / 1e6:.1f} MB "
            f"({ratio:.0%}), {rate:.1f} videos/s"
        )
    for title, items in (("warnings", summary.warnings), ("failed", summary.failed)):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {rel}: {reason}" for rel, reason in items[:max_listed]]
            if len(items) > max_listed:
                lines.append(f"  ... and {len(items) - max_listed} more")
    return "\n".join(lines)
