"""Something-Something v2: JSON files in the release format, the real 174 class names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ssvrl.data.formats_ssv2 import parse_ssv2_list, ssv2_template
from ssvrl.data.index import AnnotationError, build_index

# Entries as in something-something-v2-train.json / -validation.json / -test.json.
TRAIN = [
    {
        "id": "78687",
        "label": "holding potato next to vicks vaporub bottle",
        "template": "Holding [something] next to [something]",
        "placeholders": ["potato", "vicks vaporub bottle"],
    },
    {
        "id": "42326",
        "label": "spreading margarine onto bread",
        "template": "Spreading [something] onto [something]",
        "placeholders": ["margarine", "bread"],
    },
    {
        "id": "100904",
        "label": "putting pen on a surface",
        "template": "Putting [something] on a surface",
        "placeholders": ["pen"],
    },
]
VALIDATION = [
    {
        "id": "74225",
        "label": "spinning cube that quickly stops spinning",
        "template": "Spinning [something] that quickly stops spinning",
        "placeholders": ["cube"],
    },
    {
        "id": "116154",
        "label": "approaching pen with your camera",
        "template": "Approaching [something] with your camera",
        "placeholders": ["pen"],
    },
]
TEST = [{"id": "1420"}, {"id": "1421"}]


@pytest.fixture(scope="module")
def sthv2_classes(shared_data: Path) -> list[str]:
    text = (shared_data / "mmaction2" / "label_maps" / "label_map_sthv2.txt").read_text()
    return text.splitlines()


@pytest.fixture
def ann(tmp_path: Path, sthv2_classes: list[str]) -> Path:
    folder = tmp_path / "labels"
    folder.mkdir()
    labels = {name: str(i) for i, name in enumerate(sthv2_classes)}
    (folder / "something-something-v2-labels.json").write_text(json.dumps(labels, indent=4))
    (folder / "something-something-v2-train.json").write_text(json.dumps(TRAIN, indent=4))
    (folder / "something-something-v2-validation.json").write_text(json.dumps(VALIDATION))
    (folder / "something-something-v2-test.json").write_text(json.dumps(TEST))
    return folder


def test_train_and_validation(ann: Path, sthv2_classes: list[str], shared_data: Path) -> None:
    root = ann.parent / "20bn-something-something-v2"
    root.mkdir()
    shutil.copy(shared_data / "mmaction2" / "test.mp4", root / "42326.webm")
    train = build_index("ssv2", root, "train", annotations=ann)
    assert train.classes == tuple(sthv2_classes) and len(train.classes) == 174
    assert train.records == train.records[:1]
    assert train.records[0].path == (root / "42326.webm").resolve()
    assert train.classes[train.records[0].label] == "Spreading something onto something"
    assert [p.name for p in train.missing] == ["78687.webm", "100904.webm"]
    test = build_index("ssv2", root, "test", annotations=ann, check_exists=False)
    names = [test.classes[r.label] for r in test.records]
    assert names == [ssv2_template(v["template"]) for v in VALIDATION]  # type: ignore[arg-type]
    assert test.records[1].label == 0  # "Approaching something with your camera"


def test_unlabeled_test_json_and_explicit_lists(ann: Path) -> None:
    index = build_index(
        "ssv2",
        ann,
        "test",
        test_list=ann / "something-something-v2-test.json",
        check_exists=False,
    )  # labels file found next to the list
    assert [(r.path.name, r.label) for r in index.records] == [("1420.webm", -1), ("1421.webm", -1)]


def test_line_numbers_of_pretty_printed_entries(ann: Path) -> None:
    entries = parse_ssv2_list(ann / "something-something-v2-train.json")
    text = (ann / "something-something-v2-train.json").read_text().splitlines()
    for entry in entries:
        assert entry.line is not None and text[entry.line - 1].strip() == "{"
        assert f'"id": "{entry.rel.removesuffix(".webm")}"' in text[entry.line]
    assert [e.line for e in entries] == [2, 11, 20]


@pytest.mark.parametrize(
    "items, line, reason",
    [
        ('[{"id": "1", "template": "Juggling [something]"}]', 1, "is not in something"),
        ('[\n {"id": "1"},\n {"template": "x"}\n]', 3, "expected an object with an 'id'"),
        ('[\n "1.webm"\n]', 2, "expected an object"),
        ('[{"id": "a/b"}]', 1, "plain name"),
        ('[{"id": true}]', 1, "plain name"),
        ('[{"id": 5, "template": 7}]', 1, "'template' must be a string"),
        ('[{"id": "1"},\n{"id": 1}]', 2, "duplicate of line 1"),
        ('[{"id": "1"},\n{"id": "2"]', 2, "bad JSON"),
        ('{"id": "1"}', None, "expected a JSON array"),
    ],
)
def test_errors_name_file_and_line(ann: Path, items: str, line: int | None, reason: str) -> None:
    file = ann / "something-something-v2-train.json"
    file.write_text(items)
    with pytest.raises(AnnotationError, match=reason) as info:
        build_index("ssv2", ann, "train", annotations=ann, check_exists=False)
    assert (info.value.file, info.value.line) == (file, line)


@pytest.mark.parametrize(
    "labels, reason",
    [
        ('{"a": "0", "b": "2"}', "without gaps"),
        ('{"a": "0", "b": "0"}', "class id 0 also used by 'a'"),
        ('{"a": "x"}', "non-negative integer"),
        ('["a"]', "expected an object"),
    ],
)
def test_bad_labels_file(ann: Path, labels: str, reason: str) -> None:
    (ann / "something-something-v2-labels.json").write_text(labels)
    with pytest.raises(AnnotationError, match=reason):
        build_index("ssv2", ann, "train", annotations=ann, check_exists=False)


def test_needs_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ssv2 needs `train_list`"):
        build_index("ssv2", tmp_path, "train")
    with pytest.raises(AnnotationError, match="not found"):
        build_index("ssv2", tmp_path, "train", annotations=tmp_path)
