"""Kinetics annotation CSVs (Kay et al. 2017; Kinetics-400/600/700 ``train.csv``/``validate.csv``).

Each release ships CSVs with the header ``label,youtube_id,time_start,time_end,split`` (some add
columns such as ``is_cc``; the test CSVs of some releases have no ``label``). Columns are found
by name, so order and extra columns do not matter. Labels may hold commas (quoted) and
parentheses (``punching person (boxing)``).

Downloaded clips are named ``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>`` (as the
ActivityNet download script writes them), stored in class folders named after the label or the
label with spaces replaced by underscores, or flat in the root. :class:`KineticsFiles` finds
each clip on disk; a clip found nowhere is reported missing (much of Kinetics is gone from
YouTube), at ``<class folder that exists>/<name>.mp4`` or else ``<root>/<name>.mp4``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ssvrl.data.formats import AnnotationError, Entry, Labelled, csv_rows

__all__ = [
    "KINETICS_EXTENSIONS",
    "KineticsFiles",
    "kinetics_classes",
    "kinetics_subset",
    "parse_kinetics_csv",
]

# Looked for in this order when a clip is not an .mp4 (mirrors that re-encode ship .mkv/.webm).
KINETICS_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_REQUIRED = ("youtube_id", "time_start", "time_end")


def parse_kinetics_csv(file: Path) -> list[Entry]:
    """One entry per row: ``rel`` is the clip's file name without extension, ``label`` the label.

    Raises:
        AnnotationError: missing header columns, a row with the wrong number of fields, an
            empty youtube_id or a time that is not a non-negative integer (names file and line).
    """
    rows = csv_rows(file)
    header_line, header = next(rows, (0, []))
    columns = [name.strip().lower() for name in header]
    if not all(name in columns for name in _REQUIRED):
        raise AnnotationError(
            file,
            header_line or None,
            "header must name youtube_id, time_start and time_end (label, split optional)",
            ",".join(header),
        )
    where = {name: columns.index(name) for name in (*_REQUIRED, "label") if name in columns}
    entries = []
    for line, row in rows:
        text = ",".join(row)
        if not any(field.strip() for field in row):
            continue
        if len(row) != len(columns):
            raise AnnotationError(file, line, f"expected {len(columns)} fields", text)
        video, start, end = (row[where[name]].strip() for name in _REQUIRED)
        if not video:
            raise AnnotationError(file, line, "empty youtube_id", text)
        if not (start.isdigit() and end.isdigit()):
            raise AnnotationError(file, line, "time_start/time_end must be whole seconds", text)
        label = row[where["label"]].strip() if "label" in where else ""
        stem = f"{video}_{int(start):06d}_{int(end):06d}"
        entries.append(Entry(stem, label or None, file, line, text))
    return entries


def kinetics_classes(entries: list[Entry]) -> tuple[str, ...]:
    """The sorted unique labels (unlabeled rows ignored)."""
    return tuple(sorted({e.label for e in entries if e.label is not None}))


class KineticsFiles:
    """Finds clips under ``root`` in any of the layouts above, listing each folder only once."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self._listings: dict[str, frozenset[str] | None] = {}

    def _names(self, folder: str) -> frozenset[str] | None:
        """The names in ``root/folder``, or None when it is not a folder."""
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(os.listdir(os.path.join(self.root, folder)))
            except (FileNotFoundError, NotADirectoryError):
                self._listings[folder] = None
        return self._listings[folder]

    def _folders(self, label: str | None) -> list[str]:
        """Candidate class folders of ``label`` (raw, then underscored), then the root ``""``."""
        if label is None:
            return [""]
        return [*dict.fromkeys((label, label.replace(" ", "_"))), ""]

    def find(self, entry: Entry) -> str | None:
        """The clip's path relative to root if it is on disk, else None."""
        for folder in self._folders(entry.label):
            names = self._names(folder) or frozenset()
            for ext in KINETICS_EXTENSIONS:
                if entry.rel + ext in names:
                    return os.path.join(folder, entry.rel + ext)
        return None

    def expected(self, entry: Entry) -> str:
        """Where a missing clip is reported: in its class folder when one exists, else root."""
        folder = next(f for f in self._folders(entry.label) if not f or self._names(f) is not None)
        return os.path.join(folder, entry.rel + KINETICS_EXTENSIONS[0])


def kinetics_subset(root: Path, subset: str, train: Path | None, test: Path | None) -> Labelled:
    """Classes from both CSVs (those present) and ``(entry, label)`` of the subset's CSV, each
    ``rel`` the clip's path under ``root`` (found on disk, else where it is reported missing)."""
    own_file, other_file = (train, test) if subset == "train" else (test, train)
    if own_file is None:
        raise ValueError(f"kinetics needs `{subset}_list` or an `annotations` folder")
    own = parse_kinetics_csv(own_file)
    other = parse_kinetics_csv(other_file) if other_file and other_file.is_file() else []
    classes = kinetics_classes(own + other)
    ids = {name: i for i, name in enumerate(classes)}
    files = KineticsFiles(root)
    labelled = []
    for entry in own:
        rel = files.find(entry) or files.expected(entry)
        label = ids[entry.label] if entry.label is not None else -1
        labelled.append((dataclasses.replace(entry, rel=rel), label))
    return classes, labelled
