"""HMDB51's official split files (Kuehne et al., ICCV 2011; ``test_train_splits.rar``).

The release has one file per class and split, ``<class>_test_split<k>.txt`` (k = 1..3), each
line ``<video name>.avi <usage>`` (often with a trailing space) where usage 1 = training,
2 = testing and 0 = not used in that split. Videos unpack to ``<root>/<class>/<video name>.avi``.

Class ids follow the sorted class names (Python ``sorted``, i.e. code-point order), the order of
mmaction2's ``label_map_hmdb51.txt`` (``brush_hair`` = 0 ... ``wave`` = 50), which builds its
class index from ``sorted(os.listdir(videos))``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ssvrl.data.formats import AnnotationError, Entry, Labelled, numbered_lines

__all__ = ["hmdb51_split_files", "hmdb51_subset"]

_SPLIT_FILE = re.compile(r"(?P<cls>.+)_test_split(?P<k>\d+)\.txt")
_USAGE = {"train": "1", "test": "2"}


def hmdb51_split_files(annotations: Path, split: int) -> dict[str, Path]:
    """``{class name: split file}`` of split ``split`` in ``annotations``, sorted by class."""
    if split not in (1, 2, 3) or isinstance(split, bool):
        raise AnnotationError(annotations, None, f"split must be 1, 2 or 3, got {split!r}")
    try:
        names = [p.name for p in annotations.iterdir() if p.is_file()]
    except OSError as err:
        raise AnnotationError(annotations, None, f"cannot list folder ({err.strerror})") from None
    found = {}
    for name in names:
        match = _SPLIT_FILE.fullmatch(name)
        if match and int(match["k"]) == split:
            found[match["cls"]] = annotations / name
    if not found:
        raise AnnotationError(annotations, None, f"no '<class>_test_split{split}.txt' files")
    return {cls: found[cls] for cls in sorted(found)}


def hmdb51_subset(annotations: Path | None, split: int, subset: str) -> Labelled:
    """Class names and ``(entry, 0-based label)`` of the subset's videos in split ``split``.

    Raises:
        AnnotationError: no split files, a line that is not ``<name> 0|1|2``, or a name that is
            not a plain file name (names the file and line).
    """
    if annotations is None:
        raise ValueError("hmdb51 needs `annotations`: the folder of <class>_test_split<k>.txt")
    files = hmdb51_split_files(Path(annotations), split)
    classes = tuple(files)
    wanted = _USAGE[subset]
    labelled = []
    for label, (cls, file) in enumerate(files.items()):
        for line, text in numbered_lines(file):
            fields = text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise AnnotationError(file, line, "expected '<video name> 0|1|2'", text)
            name, usage = fields
            if "/" in name or "\\" in name or name in (".", ".."):
                raise AnnotationError(file, line, "video name must be a plain file name", text)
            if usage == wanted:
                labelled.append((Entry(f"{cls}/{name}", cls, file, line, text), label))
    return classes, labelled
