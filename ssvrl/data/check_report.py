"""The report of ``ssvrl data check``: its rows, the files written and the printed summary.

:class:`CheckRow` is one video (path, subset, label, status, reason, frame count, rate, size);
:class:`CheckReport` holds all rows; :func:`write_report` writes ``check.json`` and
``check.csv``; :func:`format_summary` and :func:`outputs` are what the command prints. The
statuses are described in :mod:`ssvrl.data.check`, which re-exports all of these.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ssvrl.data.index_cache import VideoInfo

STATUSES = ("ok", "too_short", "unreadable", "timeout", "missing")
BAD = ("unreadable", "timeout", "missing")
CSV_FIELDS = ("path", "subset", "label", "status", "reason", "num_frames", "fps", "height", "width")


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
