"""Folder-per-class datasets: ``<root>/<class>/<video>``, no annotation file needed.

A video is a file with a common video extension (:data:`VIDEO_EXTENSIONS`, case-insensitive) or
a frame folder: a directory holding ``img_00001.jpg`` (mmaction2's rawframes naming). Classes
are the sorted names of the non-hidden folders directly under the root. Other files and hidden
entries are ignored.

Subsets: with ``train_list``/``test_list``, each is a plain list of paths relative to the root,
one per line, whose first folder is the class. Without them, the split is deterministic: a video
is in the test subset when the first 8 bytes of SHA-1 of its root-relative path (``/``
separated, UTF-8), read as a big-endian fraction of 2**64, are below ``test_fraction``. So a
video's subset never depends on which other videos exist, the machine, or a random seed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ssvrl.data._frames_backend import DEFAULT_TEMPLATE
from ssvrl.data.formats import AnnotationError, Entry, Labelled, numbered_lines

__all__ = ["VIDEO_EXTENSIONS", "folder_subset", "in_test_split", "scan_class_folders"]

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv"}
)
_FIRST_FRAME = DEFAULT_TEMPLATE.format(1)


def in_test_split(rel: str, test_fraction: float) -> bool:
    """Whether the video at root-relative ``rel`` falls in the hashed test subset."""
    digest = hashlib.sha1(rel.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _class_folders(root: Path) -> list[str]:
    """Sorted names of the non-hidden folders directly under ``root``."""
    try:
        with os.scandir(root) as it:
            return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError as err:
        raise AnnotationError(
            root, None, f"cannot list the dataset root ({err.strerror})"
        ) from None


def _is_video(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith("."):
        return False
    if entry.is_dir():
        return os.path.isfile(os.path.join(entry.path, _FIRST_FRAME))
    return entry.is_file() and os.path.splitext(entry.name)[1].lower() in VIDEO_EXTENSIONS


def scan_class_folders(root: Path) -> tuple[tuple[str, ...], list[Entry]]:
    """The classes and every video under them, in sorted order (``line`` None, label = class)."""
    classes = tuple(_class_folders(root))
    entries = []
    for cls in classes:
        with os.scandir(root / cls) as it:
            names = sorted(e.name for e in it if _is_video(e))
        entries += [Entry(f"{cls}/{name}", cls, root, None, f"{cls}/{name}") for name in names]
    return classes, entries


def _listed(file: Path, classes: tuple[str, ...]) -> list[Entry]:
    """A plain path list; each path's first folder must be a class folder."""
    known = set(classes)
    entries = []
    for line, text in numbered_lines(file):
        parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
        if len(parts) < 2 or parts[0] not in known:
            raise AnnotationError(file, line, "path does not start with a class folder", text)
        entries.append(Entry(text, parts[0], file, line, text))
    return entries


def folder_subset(root: Path, subset: str, own_list: Path | None, test_fraction: float) -> Labelled:
    """Classes and ``(entry, 0-based label)`` of the subset, from ``own_list`` or the hash split."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if own_list is not None:
        classes = tuple(_class_folders(root))
        entries = _listed(own_list, classes)
    else:
        classes, found = scan_class_folders(root)
        entries = [e for e in found if in_test_split(e.rel, test_fraction) == (subset == "test")]
    ids = {name: i for i, name in enumerate(classes)}
    return classes, [(e, ids[e.label or ""]) for e in entries]
