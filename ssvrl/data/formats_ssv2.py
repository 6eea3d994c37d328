"""Something-Something v2 JSON annotations (Goyal et al., ICCV 2017; the 20bn/Qualcomm release).

``something-something-v2-labels.json`` maps each of the 174 templates, brackets removed, to its
class id as a string: ``{"Approaching something with your camera": "0", ...}``.
``something-something-v2-train.json`` and ``-validation.json`` are arrays of
``{"id": "78687", "label": "holding potato next to vicks vaporub bottle",
"template": "Holding [something] next to [something]", "placeholders": [...]}``; the class is
the ``template`` with ``[`` and ``]`` removed (``label`` is the filled-in caption). The test
JSON holds ``{"id": ...}`` only: those videos get label -1. Videos are ``<root>/<id>.webm``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ssvrl.data.formats import AnnotationError, Entry, Labelled, read_text

__all__ = [
    "SSV2_FILES",
    "parse_ssv2_labels",
    "parse_ssv2_list",
    "ssv2_subset",
    "ssv2_template",
]

# Default file names, as released, in the annotations folder.
SSV2_FILES = {
    "labels": "something-something-v2-labels.json",
    "train": "something-something-v2-train.json",
    "test": "something-something-v2-validation.json",
}


def ssv2_template(template: str) -> str:
    """The class name of a template: ``"Holding [something] next to [something]"`` ->
    ``"Holding something next to something"``."""
    return template.replace("[", "").replace("]", "")


def _load(file: Path) -> tuple[str, Any]:
    """The file's text and its parsed JSON; syntax errors name the line."""
    text = read_text(file)
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(file, err.lineno, f"bad JSON ({err.msg})") from None


def parse_ssv2_labels(file: Path) -> tuple[str, ...]:
    """Class names ordered by id from the labels JSON (ids must be 0..n-1 without gaps)."""
    _, data = _load(file)
    if not isinstance(data, dict):
        raise AnnotationError(file, None, "expected an object {template: class id}")
    by_id: dict[int, str] = {}
    for name, value in data.items():
        if not str(value).isdigit():
            raise AnnotationError(file, None, "class id must be a non-negative integer", name)
        if int(value) in by_id:
            raise AnnotationError(
                file, None, f"class id {value} also used by {by_id[int(value)]!r}", name
            )
        by_id[int(value)] = name
    if sorted(by_id) != list(range(len(by_id))):
        raise AnnotationError(file, None, f"class ids must be 0..{len(by_id) - 1} without gaps")
    return tuple(by_id[i] for i in range(len(by_id)))


def _items(file: Path) -> Iterator[tuple[int, Any]]:
    """``(line where it starts, value)`` for each element of the file's top-level JSON array."""
    text, data = _load(file)
    if not isinstance(data, list):
        raise AnnotationError(file, None, "expected a JSON array of videos")
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    for _ in data:  # re-walk the array to find where each element starts
        while text[pos] in " \t\r\n,":
            pos += 1
        value, end = decoder.raw_decode(text, pos)
        yield text.count("\n", 0, pos) + 1, value
        pos = end


def parse_ssv2_list(file: Path) -> list[Entry]:
    """One entry per video: ``rel`` = ``<id>.webm``, ``label`` = class name or None (test).

    Raises:
        AnnotationError: not an array of objects, an ``id`` that is not a plain name, or a
            ``template`` that is not a string (names the file and line of the element).
    """
    entries = []
    for line, item in _items(file):
        shown = json.dumps(item, ensure_ascii=False)
        if not isinstance(item, dict) or "id" not in item:
            raise AnnotationError(file, line, "expected an object with an 'id'", shown)
        video = str(item["id"])
        if isinstance(item["id"], bool) or not video or "/" in video or "\\" in video:
            raise AnnotationError(file, line, "'id' must be a plain name", shown)
        template = item.get("template")
        if template is not None and not isinstance(template, str):
            raise AnnotationError(file, line, "'template' must be a string", shown)
        label = ssv2_template(template) if template is not None else None
        entries.append(Entry(f"{video}.webm", label, file, line, shown))
    return entries


def ssv2_subset(
    annotations: Path | None, subset: str, train: Path | None, test: Path | None
) -> Labelled:
    """Classes from the labels JSON (in ``annotations``, else next to the subset's list) and
    ``(entry, label)`` of the subset's JSON; a template not in the labels file is an error."""
    own_file = train if subset == "train" else test
    if own_file is None:
        raise ValueError(f"ssv2 needs `{subset}_list` or an `annotations` folder")
    labels_file = Path(annotations or own_file.parent) / SSV2_FILES["labels"]
    classes = parse_ssv2_labels(labels_file)
    ids = {name: i for i, name in enumerate(classes)}
    labelled = []
    for entry in parse_ssv2_list(own_file):
        if entry.label is not None and entry.label not in ids:
            raise entry.error(f"template {entry.label!r} is not in {labels_file.name}")
        labelled.append((entry, ids[entry.label] if entry.label is not None else -1))
    return classes, labelled
