"""``ssvrl data check``: decode every video of a configured dataset and report the bad ones.

Each listed video is probed in a worker process (:func:`ssvrl.data.probe_pool.imap_bounded`):
opened with the configured backend and short side (as training opens it), its frame count, rate
and size read, and :data:`~ssvrl.data.check_probe.PROBE_FRAMES` frames spread over the whole
video decoded, the last one included, since truncated or damaged files often fail only
mid-stream or at the end. A probe that takes longer than the timeout counts as a bad file and
its worker is killed.

Statuses:
    ok: decodes.
    too_short: decodes, but has fewer frames than the longest view span of the experiment's
        objective. A warning only: the samplers loop short videos (index modulo the frame
        count), so such videos still train, with repeated frames; they stay in the index.
    unreadable: the decoder failed (the reason says how), or the worker process died.
    timeout: the probe did not finish within the timeout.
    missing: listed in the annotations but absent under ``data.root``.

The report (``check.json`` and ``check.csv``) lists every video; the index cache
(:mod:`ssvrl.data.index_cache`) is written alongside so training can skip the known-bad files.

This module runs the check; the per-video probe is in :mod:`ssvrl.data.check_probe`, the
report's rows, files and summary in :mod:`ssvrl.data.check_report` (both re-exported here).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from ssvrl.config.loader import ConfigError
from ssvrl.data.check_probe import (
    PROBE_FRAMES,
    Probe,
    ProbeJob,
    _probe_indices,  # noqa: F401  (tests use check._probe_indices)
    probe_video,
)
from ssvrl.data.check_report import (
    BAD,
    CSV_FIELDS,
    STATUSES,
    CheckReport,
    CheckRow,
    format_summary,
    outputs,
    write_report,
)
from ssvrl.data.index import AnnotationError, VideoIndex
from ssvrl.data.index_cache import VideoInfo, save_index_cache
from ssvrl.data.probe_pool import imap_bounded

__all__ = [
    "BAD",
    "CSV_FIELDS",
    "PROBE_FRAMES",
    "STATUSES",
    "CheckReport",
    "CheckRow",
    "Probe",
    "ProbeJob",
    "check_dataset",
    "format_summary",
    "outputs",
    "probe_video",
    "write_report",
]


def longest_span(cfg: Any) -> int:
    """Frames the longest view of the experiment's objective covers (1 if it has none)."""
    from ssvrl.engine.build import build_objective

    objective = build_objective(cfg, embed_dim=8)  # only its views are needed
    return max((v.span for v in objective.clip_sampler().views), default=1)


def build_subsets(data: Any) -> tuple[dict[str, VideoIndex], list[str]]:
    """The train index (required) and the test index (when configured) with missing files
    listed, not fatal; plus notes on what was skipped.

    Raises:
        ConfigError: the train index cannot be built (bad annotations, nothing found).
    """
    from ssvrl.engine.build import DataError, build_video_index

    lenient = dataclasses.replace(data, max_missing_fraction=1.0)  # report missing, don't fail
    subsets: dict[str, VideoIndex] = {}
    notes: list[str] = []
    for subset in ("train", "test"):
        try:
            subsets[subset] = build_video_index(lenient, subset, use_cache=False)
        except (AnnotationError, DataError, ValueError, OSError) as err:
            if subset == "train":
                raise ConfigError(f"cannot index the train videos: {err}", key="data") from err
            notes.append(f"test subset skipped: {err}")
    return subsets, notes


def _jobs(subsets: dict[str, VideoIndex], data: Any) -> list[tuple[str, int, ProbeJob]]:
    """``(subset, label, job)`` per present video; a video in both subsets is probed twice."""
    return [
        (
            subset,
            rec.label,
            ProbeJob(
                str(rec.path), data.backend, data.short_side, data.frame_fps, data.frame_template
            ),
        )
        for subset, index in subsets.items()
        for rec in index.records
    ]


def _row(subset: str, label: int, path: str, outcome: Any, min_frames: int) -> CheckRow:
    """Turn one pool outcome into a report row."""
    if outcome.status == "timeout":
        return CheckRow(path, subset, label, "timeout", outcome.error, None, None, None, None)
    if not outcome.ok:
        reason = (outcome.error or "unknown error").replace(f"{path}: ", "", 1)
        reason = reason.removeprefix("VideoReadError: ")  # the path and type add nothing
        return CheckRow(path, subset, label, "unreadable", reason, None, None, None, None)
    p: Probe = outcome.value
    short = p.num_frames < min_frames
    reasons = [f"{p.num_frames} frames < longest view span {min_frames} (looped)"] if short else []
    return CheckRow(
        path,
        subset,
        label,
        "too_short" if short else "ok",
        "; ".join([*reasons, p.note] if p.note else reasons),
        p.num_frames,
        p.fps,
        p.height,
        p.width,
    )


def check_dataset(
    cfg: Any,
    *,
    workers: int | None = None,
    timeout: float = 60.0,
    out_dir: Path | None = None,
    write_cache: bool = True,
    progress: bool = True,
) -> CheckReport:
    """Probe every video of the experiment's train and test subsets; write the report files
    (when ``out_dir``) and the index cache (when ``write_cache``).

    Raises:
        ConfigError: the dataset cannot be indexed as configured.
    """
    start = time.perf_counter()
    data = cfg.data
    subsets, notes = build_subsets(data)
    min_frames = longest_span(cfg)
    jobs = _jobs(subsets, data)
    rows: list[CheckRow | None] = [None] * len(jobs)
    probing = time.perf_counter()
    outcomes = imap_bounded(probe_video, [j for _, _, j in jobs], workers=workers, timeout=timeout)
    for done, outcome in enumerate(outcomes, 1):
        subset, label, job = jobs[outcome.index]
        rows[outcome.index] = _row(subset, label, job.path, outcome, min_frames)
        if progress:
            _progress(done, len(jobs), probing)
    report_rows = [r for r in rows if r is not None]
    for subset, index in subsets.items():
        report_rows += [
            CheckRow(str(p), subset, -1, "missing", "file not found", None, None, None, None)
            for p in index.missing
        ]
    report = CheckReport(report_rows, min_frames, time.perf_counter() - start, notes=notes)
    if out_dir is not None:
        report.json_path, report.csv_path = write_report(report, Path(out_dir))
    if write_cache:
        report.cache_path = _write_cache(data, subsets, report_rows)
    return report


def _progress(done: int, total: int, start: float) -> None:
    """A progress line on stderr every 200 videos and at the end."""
    if done % 200 and done != total:
        return
    rate = done / max(time.perf_counter() - start, 1e-9)
    eta = (total - done) / rate if rate else 0.0
    print(
        f"check: {done}/{total} videos, {rate:.1f}/s, ETA {eta:.0f} s", file=sys.stderr, flush=True
    )


def _write_cache(data: Any, subsets: dict[str, VideoIndex], rows: list[CheckRow]) -> Path | None:
    """Save the index cache; a cache that cannot be written is a warning, not a failure."""
    by_subset: dict[str, list[tuple[Path, VideoInfo]]] = {s: [] for s in subsets}
    for r in rows:
        by_subset[r.subset].append((Path(r.path), r.info()))
    try:
        return save_index_cache(
            data, {s: (subsets[s], by_subset[s]) for s in subsets}, data.backend
        )
    except OSError as err:
        print(f"warning: index cache not written: {err}", file=sys.stderr)
        return None
