"""Which videos a subset holds, with 0-based labels, from any supported dataset layout.

Formats: ``ucf101`` (official split files), ``csv`` (``path,label``), ``hmdb51`` (official
split files), ``kinetics`` (the release CSVs), ``ssv2`` (Something-Something v2 JSON),
``folder`` (folder per class, no annotations) and ``rawframes`` (mmaction2 frame-folder lists).
:func:`build_index` parses the lists (``ssvrl.data.formats*``), maps labels to 0-based class
ids, and resolves every path against ``root``. Resolution is also a safety check: a listed path
that ends up outside ``root`` (``../x``, an absolute path elsewhere, a symlink pointing out) is
rejected, so an annotation file can never make the loader read arbitrary files. Listed files
absent on disk are collected in :attr:`VideoIndex.missing` for the caller to judge.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ssvrl.data.formats import (
    INTEGER,
    AnnotationError,
    Entry,
    Labelled,
    csv_classes,
    parse_class_index,
    parse_csv_list,
    parse_rawframe_list,
    parse_ucf101_list,
)
from ssvrl.data.formats_folder import folder_subset
from ssvrl.data.formats_hmdb51 import hmdb51_subset
from ssvrl.data.formats_kinetics import kinetics_subset
from ssvrl.data.formats_ssv2 import SSV2_FILES, ssv2_subset

__all__ = ["FORMATS", "AnnotationError", "Format", "VideoRecord", "VideoIndex", "build_index"]

Format = Literal["ucf101", "csv", "hmdb51", "kinetics", "ssv2", "folder", "rawframes"]
FORMATS: tuple[str, ...] = Format.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class VideoRecord:
    """One video: absolute resolved path inside the root, 0-based label (-1 if unlabeled)."""

    path: Path
    label: int


@dataclass(frozen=True)
class VideoIndex:
    """The videos of one subset, the class names by id, and listed-but-absent files."""

    root: Path
    records: tuple[VideoRecord, ...]
    classes: tuple[str, ...]
    missing: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.records)


def build_index(
    fmt: Format,
    root: Path,
    subset: Literal["train", "test"],
    *,
    annotations: Path | None = None,
    split: int = 1,
    train_list: Path | None = None,
    test_list: Path | None = None,
    check_exists: bool = True,
    test_fraction: float = 0.2,
) -> VideoIndex:
    """Index the ``subset`` videos under ``root``.

    ucf101: ``annotations`` holds ``classInd.txt``, ``trainlist0{split}.txt`` and
    ``testlist0{split}.txt`` (``train_list``/``test_list`` override the two lists); test
    labels come from the class folder, matched case-insensitively. csv: ``train_list`` and
    ``test_list`` (default ``annotations/train.csv`` and ``test.csv``) hold ``path,label``
    rows; labels are all integer ids, or all class names numbered in sorted order over both
    lists (those present) so train and test ids agree.

    hmdb51: ``annotations`` holds the ``<class>_test_split{split}.txt`` files; classes sorted.
    kinetics: ``train_list``/``test_list`` (default ``annotations/train.csv`` and
    ``validate.csv``) are the release CSVs; clips are looked up on disk in class folders or flat
    (:mod:`ssvrl.data.formats_kinetics`); classes are the sorted labels of both CSVs (those
    present). ssv2: ``annotations`` holds the release JSONs (``train_list``/``test_list``
    override train/validation). folder: ``<root>/<class>/<video or frame folder>``, subsets
    from plain path lists or a hash split with ``test_fraction`` (:mod:`ssvrl.data.
    formats_folder`). rawframes: ``train_list``/``test_list`` in mmaction2's
    ``<frame folder> <total frames> <label>`` format, integer labels.

    Raises:
        AnnotationError: malformed row, unknown class, label/folder disagreement, path
            escaping ``root``, duplicate path, bad ``split`` (names file and line).
    """
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    root = Path(root)
    exists: Callable[[str], bool] = os.path.isfile
    if fmt == "ucf101":
        classes, labelled = _ucf101(annotations, subset, split, train_list, test_list)
    elif fmt == "csv":
        classes, labelled = _csv(annotations, subset, train_list, test_list)
    elif fmt == "hmdb51":
        classes, labelled = hmdb51_subset(annotations, split, subset)
    elif fmt == "kinetics":
        files = _lists(annotations, train_list, test_list, "train.csv", "validate.csv")
        classes, labelled = kinetics_subset(root, subset, *files)
    elif fmt == "ssv2":
        files = _lists(annotations, train_list, test_list, SSV2_FILES["train"], SSV2_FILES["test"])
        classes, labelled = ssv2_subset(annotations, subset, *files)
    elif fmt == "folder":
        if (train_list or test_list) and not (train_list and test_list):
            raise ValueError("folder: give both `train_list` and `test_list`, or neither")
        own = train_list if subset == "train" else test_list
        classes, labelled = folder_subset(root, subset, own, test_fraction)
        exists = os.path.exists  # a video file or a frame folder
    elif fmt == "rawframes":
        classes, labelled = _rawframes(subset, train_list, test_list)
        exists = os.path.isdir
    else:
        expected = ", ".join(repr(name) for name in FORMATS)
        raise ValueError(f"unknown annotation format {fmt!r}; expected one of {expected}")
    return _resolve(root, labelled, classes, check_exists, exists)


def _ucf101(
    annotations: Path | None,
    subset: str,
    split: int,
    train_list: Path | None,
    test_list: Path | None,
) -> tuple[tuple[str, ...], list[tuple[Entry, int]]]:
    """Classes from classInd.txt and ``(entry, 0-based label)`` for the subset's list."""
    if annotations is None:
        raise ValueError("ucf101 needs `annotations`: the folder holding classInd.txt")
    if split not in (1, 2, 3) or isinstance(split, bool):
        raise AnnotationError(Path(annotations), None, f"split must be 1, 2 or 3, got {split!r}")
    classes = parse_class_index(Path(annotations) / "classInd.txt")
    default = Path(annotations) / f"{subset}list0{split}.txt"
    file = (train_list if subset == "train" else test_list) or default
    folder_ids = {name.lower(): i for i, name in enumerate(classes)}
    labelled = []
    for entry in parse_ucf101_list(file, require_label=subset == "train"):
        parts = [part for part in entry.rel.split("/") if part not in ("", ".")]
        if len(parts) < 2 or parts[0].lower() not in folder_ids:
            raise entry.error("path does not start with a class folder listed in classInd.txt")
        label = folder_ids[parts[0].lower()]
        if entry.label is not None:
            if not INTEGER.fullmatch(entry.label) or not 1 <= int(entry.label) <= len(classes):
                raise entry.error(f"label must be a class id in 1..{len(classes)}")
            if int(entry.label) - 1 != label:
                raise entry.error(
                    f"label {entry.label} ({classes[int(entry.label) - 1]}) "
                    f"disagrees with class folder {parts[0]!r}"
                )
        labelled.append((entry, label))
    return classes, labelled


def _csv(
    annotations: Path | None,
    subset: str,
    train_list: Path | None,
    test_list: Path | None,
) -> tuple[tuple[str, ...], list[tuple[Entry, int]]]:
    """Classes and ``(entry, 0-based label)`` for the subset's CSV list."""
    base = Path(annotations) if annotations is not None else None
    train = train_list or (base / "train.csv" if base else None)
    test = test_list or (base / "test.csv" if base else None)
    own_file, other_file = (train, test) if subset == "train" else (test, train)
    if own_file is None:
        raise ValueError(f"csv needs `{subset}_list` or an `annotations` folder")
    own = parse_csv_list(Path(own_file))
    other = parse_csv_list(Path(other_file)) if other_file and Path(other_file).is_file() else []
    classes, class_id = csv_classes([e for e in own + other if e.label is not None])
    return classes, [(e, class_id(e.label) if e.label is not None else -1) for e in own]


def _rawframes(subset: str, train_list: Path | None, test_list: Path | None) -> Labelled:
    """Integer-labelled frame folders from mmaction2 rawframe lists (ids agree across lists)."""
    own_file, other_file = (train_list, test_list) if subset == "train" else (test_list, train_list)
    if own_file is None:
        raise ValueError(f"rawframes needs `{subset}_list`")
    own = parse_rawframe_list(Path(own_file))
    other = (
        parse_rawframe_list(Path(other_file)) if other_file and Path(other_file).is_file() else []
    )
    classes, class_id = csv_classes(own + other)
    return classes, [(e, class_id(e.label or "")) for e in own]


def _lists(
    annotations: Path | None,
    train_list: Path | None,
    test_list: Path | None,
    train_name: str,
    test_name: str,
) -> tuple[Path | None, Path | None]:
    """The train and test annotation files: given ones, else defaults in ``annotations``."""
    base = Path(annotations) if annotations is not None else None
    train = Path(train_list) if train_list else (base / train_name if base else None)
    test = Path(test_list) if test_list else (base / test_name if base else None)
    return train, test


def _resolve(
    root: Path,
    labelled: list[tuple[Entry, int]],
    classes: tuple[str, ...],
    check_exists: bool,
    exists: Callable[[str], bool] = os.path.isfile,
) -> VideoIndex:
    """Resolve paths inside ``root``, reject escapes and duplicates, split off missing files.

    ``exists`` decides whether a resolved path is present: ``os.path.isfile`` for video files,
    ``os.path.isdir`` for frame folders, ``os.path.exists`` where both occur.
    """
    base = os.path.realpath(root)
    inside = base.rstrip(os.sep) + os.sep
    resolve = _cached_resolver(base)
    records, missing = [], []
    seen: dict[str, Entry] = {}
    for entry, label in labelled:
        path = resolve(entry.rel)
        if not path.startswith(inside):
            raise entry.error(f"path resolves outside the dataset root {base}")
        if path in seen:
            first = seen[path]
            raise entry.error(
                f"duplicate of line {first.line}"
                if first.line is not None
                else f"duplicate of {first.rel}"
            )
        seen[path] = entry
        if check_exists and not exists(path):
            missing.append(Path(path))
        else:
            records.append(VideoRecord(Path(path), label))
    return VideoIndex(Path(base), tuple(records), classes, tuple(missing))


def _cached_resolver(base: str) -> Callable[[str], str]:
    """``os.path.realpath(base / rel)``, resolving each parent folder only once.

    Same result as resolving the whole path (a symlinked file is still followed), but a
    101-class dataset needs ~101 full resolutions instead of ~13k. Plain strings, not pathlib:
    pathlib's parsing dominated the cost (~3x slower on the UCF101 lists).
    """
    parents: dict[str, str] = {}

    def resolve(rel: str) -> str:
        joined = os.path.join(base, rel)
        folder, name = os.path.split(joined)
        if ".." in joined.split(os.sep) or name in ("", "."):
            return os.path.realpath(joined)
        if folder not in parents:
            parents[folder] = os.path.realpath(folder)
        path = os.path.join(parents[folder], name)
        return os.path.realpath(path) if os.path.islink(path) else path

    return resolve
