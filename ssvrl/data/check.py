"""``ssvrl data check``: decode every video of a configured dataset and report the bad ones.

Each listed video is probed in a worker process (:func:`ssvrl.data.probe_pool.imap_bounded`):
opened with the configured backend and short side (as training opens it), its frame count, rate
and size read, and :data:`PROBE_FRAMES` frames spread over the whole video decoded, the last
one included, since truncated or damaged files often fail only mid-stream or at the end. A
probe that takes longer than the timeout counts as a bad file and its worker is killed.

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
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ssvrl.config.loader import ConfigError
from ssvrl.data.index import AnnotationError, VideoIndex
from ssvrl.data.index_cache import VideoInfo, save_index_cache
from ssvrl.data.probe_pool import imap_bounded

__all__ = ["PROBE_FRAMES", "STATUSES", "CheckRow", "CheckReport", "probe_video", "check_dataset"]

PROBE_FRAMES = 5
STATUSES = ("ok", "too_short", "unreadable", "timeout", "missing")
BAD = ("unreadable", "timeout", "missing")
CSV_FIELDS = ("path", "subset", "label", "status", "reason", "num_frames", "fps", "height", "width")


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


@dataclass(frozen=True)
class CheckRow:
    """One row of the report."""

    path: str
    subset: str
    label: int
    status: str
    reason: str
    num_frames: int | None
    fps: float | None
    height: int | None
    width: int | None

    def info(self) -> VideoInfo:
        return VideoInfo(
            self.status, self.reason, self.num_frames, self.fps, self.height, self.width
        )


@dataclass
class CheckReport:
    """All rows, the span used for ``too_short``, and where the outputs went."""

    rows: list[CheckRow]
    min_frames: int
    seconds: float
    json_path: Path | None = None
    csv_path: Path | None = None
    cache_path: Path | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(r.status for r in self.rows)

    @property
    def bad(self) -> list[CheckRow]:
        return [r for r in self.rows if r.status in BAD]


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


def write_report(report: CheckReport, out_dir: Path) -> tuple[Path, Path]:
    """``check.json`` (summary + rows) and ``check.csv`` (rows) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [dataclasses.asdict(r) for r in report.rows]
    summary = {
        "counts": {s: report.counts().get(s, 0) for s in STATUSES},
        "min_frames": report.min_frames,
        "seconds": round(report.seconds, 3),
        "notes": report.notes,
    }
    json_path, csv_path = out_dir / "check.json", out_dir / "check.csv"
    json_path.write_text(json.dumps({"summary": summary, "videos": rows}, indent=1) + "\n")
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return json_path, csv_path


def _stats(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"min {min(values):g}  median {statistics.median(values):g}  max {max(values):g}"


def format_summary(report: CheckReport, max_listed: int = 20) -> str:
    """The printed summary: counts per status, frame/fps/resolution statistics, bad files."""
    counts = report.counts()
    readable = [r for r in report.rows if r.num_frames is not None]
    sizes = Counter(f"{r.width}x{r.height}" for r in readable)
    lines = [f"{'status':<12}{'videos':>8}"]
    lines += [f"{s:<12}{counts.get(s, 0):>8}" for s in STATUSES]
    lines.append(f"{'total':<12}{len(report.rows):>8}")
    lines.append(f"frames      {_stats([float(r.num_frames or 0) for r in readable])}")
    lines.append(f"fps         {_stats([round(r.fps or 0.0, 3) for r in readable])}")
    short_sides = [float(min(r.height or 0, r.width or 0)) for r in readable]
    lines.append(f"short side  {_stats(short_sides)}")
    common = ", ".join(f"{size} ({n})" for size, n in sizes.most_common(5))
    lines.append(f"sizes       {common or '-'}")
    lines.append(f"too_short   < {report.min_frames} frames (the longest view span; looped)")
    lines += report.notes
    bad = report.bad
    if bad:
        lines.append(f"bad videos ({len(bad)}):")
        lines += [f"  {r.status:<10} {r.path}: {r.reason}" for r in bad[:max_listed]]
        if len(bad) > max_listed:
            lines.append(f"  ... and {len(bad) - max_listed} more (see the report)")
    return "\n".join(lines)


def outputs(report: CheckReport) -> Iterable[str]:
    """Lines naming the files written."""
    for label, path in (
        ("report", report.json_path),
        ("csv", report.csv_path),
        ("index cache", report.cache_path),
    ):
        if path is not None:
            yield f"{label}: {path}"
