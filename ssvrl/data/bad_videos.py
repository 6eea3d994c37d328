"""Bad-video bookkeeping shared by every DataLoader worker and every rank.

A video that fails to decode is recorded ONCE, across processes, by creating a marker file with
``O_CREAT | O_EXCL`` (atomic on POSIX file systems): the process whose create succeeds logs the
warning, every other process sees the marker and skips the file without decoding it again. The
markers are the run's bad-video summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("ssvrl.data")


class TooManyBadVideosError(RuntimeError):
    """More than the allowed fraction of the dataset failed to decode."""


class BadVideoLog:
    """Records unreadable videos in ``folder`` (one JSON marker each) and enforces a limit.

    Args:
        folder: where markers go (the run folder's ``bad_videos/``); a fresh temporary folder
            when None.
        total: number of videos in the dataset (for the fraction).
        max_fraction: stop with :class:`TooManyBadVideosError` once more than this fraction of
            the dataset is known bad.
    """

    def __init__(self, folder: Path | None, total: int, max_fraction: float = 0.1) -> None:
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="ssvrl-bad-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.total = total
        self.max_fraction = max_fraction
        self._known: set[str] = set()

    def _marker(self, path: Path) -> Path:
        return self.folder / (hashlib.sha1(str(path).encode()).hexdigest()[:16] + ".json")

    def is_bad(self, path: Path) -> bool:
        key = str(path)
        if key in self._known:
            return True
        if self._marker(path).exists():
            self._known.add(key)
            return True
        return False

    def record(self, path: Path, reason: str) -> None:
        """Mark ``path`` bad; logs only in the first process to do so; enforces the limit."""
        self._known.add(str(path))
        try:
            fd = os.open(self._marker(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as f:
            json.dump({"path": str(path), "reason": reason}, f)
        log.warning("skipping unreadable video %s: %s", path, reason)
        bad = self.count()
        if bad > self.max_fraction * self.total:
            raise TooManyBadVideosError(
                f"{bad} of {self.total} videos are unreadable (more than "
                f"data.max_bad_fraction={self.max_fraction}); see {self.folder} and check the "
                f"dataset with the list of files there"
            )

    def count(self) -> int:
        return sum(1 for p in self.folder.glob("*.json"))

    def summary(self) -> list[dict[str, str]]:
        """Every recorded bad video as ``{"path", "reason"}``, sorted by path."""
        items = []
        for p in self.folder.glob("*.json"):
            try:
                items.append(json.loads(p.read_text()))
            except (OSError, json.JSONDecodeError):  # a marker being written right now
                continue
        return sorted(items, key=lambda d: d["path"])
