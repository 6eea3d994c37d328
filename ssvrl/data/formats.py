"""Parsers for annotation list files, kept apart from path resolution in :mod:`ssvrl.data.index`.

Each parser turns a file into :class:`Entry` rows that remember where they came from, so any
later check (unknown class, path escaping the root, duplicate) can name the file and line.
Files are read as UTF-8 (a BOM is ignored); CRLF line endings, blank lines and trailing spaces
are accepted everywhere.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AnnotationError",
    "Entry",
    "parse_class_index",
    "parse_ucf101_list",
    "parse_csv_list",
    "csv_classes",
    "parse_rawframe_list",
    "read_text",
    "numbered_lines",
    "csv_rows",
    "Labelled",
    "INTEGER",
]

INTEGER = re.compile(r"[+-]?\d+")

# What each format's builder returns: class names by id, and (entry, 0-based label) per video.
Labelled = tuple[tuple[str, ...], list[tuple["Entry", int]]]


class AnnotationError(ValueError):
    """A malformed or unsafe annotation; the message names the file, line and offending text."""

    def __init__(self, file: Path, line: int | None, reason: str, text: str | None = None) -> None:
        self.file, self.line, self.reason, self.text = file, line, reason, text
        where = f"{file}:{line}" if line is not None else str(file)
        shown = f": {text!r}" if text is not None else ""
        super().__init__(f"{where}: {reason}{shown}")

    def __reduce__(self) -> tuple[type, tuple[Path, int | None, str, str | None]]:
        return (type(self), (self.file, self.line, self.reason, self.text))


@dataclass(frozen=True)
class Entry:
    """One listed video before resolution: path and label text exactly as written.

    ``line`` is None for videos found by scanning folders rather than read from a list; then
    ``file`` is the scanned folder and ``text`` the relative path.
    """

    rel: str
    label: str | None  # None when the row has no label
    file: Path
    line: int | None
    text: str  # the whole row, for error messages

    def error(self, reason: str) -> AnnotationError:
        """An AnnotationError pointing at this row."""
        return AnnotationError(self.file, self.line, reason, self.text)


def read_text(file: Path) -> str:
    """The file's text; missing or non-UTF-8 files become AnnotationError."""
    try:
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(file, None, "annotation file not found") from None
    except UnicodeDecodeError as err:
        raise AnnotationError(file, None, f"not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise AnnotationError(file, None, f"cannot read ({err.strerror})") from None


def numbered_lines(file: Path) -> list[tuple[int, str]]:
    """``(1-based line number, stripped text)`` of the non-blank lines of ``file``."""
    lines = read_text(file).splitlines()  # handles \n, \r\n and \r
    return [(n, text.strip()) for n, text in enumerate(lines, start=1) if text.strip()]


def parse_class_index(file: Path) -> tuple[str, ...]:
    """UCF101 ``classInd.txt`` (``"<1-based id> <name>"``) as names ordered by 0-based id."""
    by_id: dict[int, tuple[str, int]] = {}
    for line, text in numbered_lines(file):
        fields = text.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise AnnotationError(file, line, "expected '<id> <class name>'", text)
        class_id = int(fields[0])
        if class_id in by_id:
            raise AnnotationError(
                file, line, f"class id {class_id} also on line {by_id[class_id][1]}", text
            )
        by_id[class_id] = (fields[1], line)
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise AnnotationError(file, None, f"class ids must be 1..{len(by_id)} without gaps")
    names = tuple(by_id[i][0] for i in range(1, len(by_id) + 1))
    if len({name.lower() for name in names}) != len(names):
        raise AnnotationError(file, None, "class names repeat (case-insensitively)")
    return names


def parse_ucf101_list(file: Path, *, require_label: bool) -> list[Entry]:
    """UCF101 ``trainlist0N.txt`` (``"Class/v_..avi <id>"``) or ``testlist0N.txt`` (path only)."""
    entries = []
    for line, text in numbered_lines(file):
        fields = text.split()
        if len(fields) > 2 or (require_label and len(fields) != 2):
            expected = "'<path> <label>'" if require_label else "'<path>' or '<path> <label>'"
            raise AnnotationError(file, line, f"expected {expected}", text)
        label = fields[1] if len(fields) == 2 else None
        entries.append(Entry(fields[0], label, file, line, text))
    return entries


def csv_rows(file: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` per CSV row; quoted fields may hold commas and newlines."""
    reader = csv.reader(read_text(file).splitlines(keepends=True), strict=True)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise AnnotationError(file, reader.line_num, f"bad CSV ({err})") from None


def parse_csv_list(file: Path) -> list[Entry]:
    """A ``path,label`` CSV (label optional, header ``path,label`` optional, quotes allowed)."""
    entries: list[Entry] = []
    for line, row in csv_rows(file):
        fields = [field.strip() for field in row]
        if not any(fields):
            continue
        text = ",".join(row)
        if not entries and [f.lower() for f in fields] in (["path", "label"], ["path"]):
            continue  # header
        if len(fields) > 2 or not fields[0]:
            raise AnnotationError(file, line, "expected 'path,label' or 'path'", text)
        label = fields[1] if len(fields) == 2 and fields[1] else None
        entries.append(Entry(fields[0], label, file, line, text))
    return entries


def csv_classes(rows: list[Entry]) -> tuple[tuple[str, ...], Callable[[str], int]]:
    """Class names and a label-text -> 0-based id map: all integer ids, or all class names."""
    numeric = [bool(INTEGER.fullmatch(e.label or "")) for e in rows]
    if len(set(numeric)) > 1:
        odd = rows[numeric.index(not numeric[0])]
        raise odd.error(
            f"labels mix integer ids and class names (see {rows[0].file.name} line {rows[0].line})"
        )
    if rows and not numeric[0]:
        classes = tuple(sorted({e.label or "" for e in rows}))
        ids = {name: i for i, name in enumerate(classes)}
        return classes, ids.__getitem__
    if negative := next((e for e in rows if int(e.label or 0) < 0), None):
        raise negative.error("integer labels must be >= 0")
    top = max((int(e.label or 0) for e in rows), default=-1)
    return tuple(str(i) for i in range(top + 1)), int


def parse_rawframe_list(file: Path) -> list[Entry]:
    """mmaction2 rawframe list: ``"<frame folder> <total frames> <label>"`` per line.

    The format of mmaction2's ``RawframeDataset`` lists (e.g. ``ucf101_train_split_1_rawframes.txt``
    from ``tools/data/build_file_list.py``); the frame count is checked to be a positive integer
    and otherwise unused (the reader counts the frames on disk). Lists with a start offset or
    several labels per line are rejected.
    """
    entries = []
    for line, text in numbered_lines(file):
        fields = text.split()
        if len(fields) != 3:
            raise AnnotationError(
                file, line, "expected '<frame folder> <total frames> <label>'", text
            )
        if not fields[1].isdigit() or int(fields[1]) <= 0:
            raise AnnotationError(file, line, "total frames must be a positive integer", text)
        entries.append(Entry(fields[0], fields[2], file, line, text))
    return entries
