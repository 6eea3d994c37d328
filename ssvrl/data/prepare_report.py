"""What ``ssvrl data prepare`` reports: the :class:`PrepareSummary` of a run, the progress line
on stderr while it runs and the summary printed at the end. Re-exported by
:mod:`ssvrl.data.prepare`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


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
