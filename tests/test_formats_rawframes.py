"""mmaction2 rawframe lists (``<frame folder> <total frames> <label>``) on the real imgs folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssvrl.data.formats import parse_rawframe_list
from ssvrl.data.index import AnnotationError, build_index
from ssvrl.data.video_reader import open_video


@pytest.fixture(scope="module")
def mm(shared_data: Path) -> Path:
    return shared_data / "mmaction2"


def test_real_list_parses_and_its_repeat_is_caught(mm: Path) -> None:
    file = mm / "annotations" / "rawframe_test_list.txt"
    entries = parse_rawframe_list(file)
    assert [(e.rel, e.label, e.line) for e in entries] == [("imgs", "127", 1), ("imgs", "127", 2)]
    with pytest.raises(AnnotationError, match="duplicate of line 1") as info:
        build_index("rawframes", mm, "test", test_list=file)  # the file lists imgs twice
    assert (info.value.file, info.value.line) == (file, 2)


def test_index_of_frame_folders(mm: Path, tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("imgs 10 3\nabsent_clip 40 1\ntest.mp4 300 0\n")
    (tmp_path / "test.txt").write_text("imgs 10 5\n")
    lists = {"train_list": tmp_path / "train.txt", "test_list": tmp_path / "test.txt"}
    train = build_index("rawframes", mm, "train", **lists)  # type: ignore[arg-type]
    assert [(r.path, r.label) for r in train.records] == [((mm / "imgs").resolve(), 3)]
    assert {p.name for p in train.missing} == {"absent_clip", "test.mp4"}  # a file is no folder
    assert train.classes == tuple(str(i) for i in range(6))  # ids agree with the test list
    with open_video(train.records[0].path, "pyav") as reader:
        assert reader.num_frames == 10


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("imgs 2 5 127\n", 1, "expected '<frame folder> <total frames> <label>'"),
        ("imgs 5\n", 1, "expected"),
        ("imgs 5 1\nimgs2 0 1\n", 2, "total frames must be a positive integer"),
        ("imgs x 1\n", 1, "total frames"),
        ("imgs 5 -1\n", 1, ">= 0"),
        ("imgs 5 cat\nimgs2 5 1\n", 2, "mix integer ids and class names"),
        ("../imgs 5 1\n", 1, "outside the dataset root"),
    ],
)
def test_errors_name_file_and_line(
    mm: Path, tmp_path: Path, text: str, line: int, reason: str
) -> None:
    file = tmp_path / "list.txt"
    file.write_text(text)
    with pytest.raises(AnnotationError, match=reason) as info:
        build_index("rawframes", mm, "train", train_list=file)
    assert (info.value.file, info.value.line) == (file, line)


def test_real_offset_list_is_rejected_clearly(mm: Path) -> None:
    file = mm / "annotations" / "rawframe_test_list_with_offset.txt"
    with pytest.raises(AnnotationError, match="expected '<frame folder>"):
        build_index("rawframes", mm, "test", test_list=file)
    with pytest.raises(ValueError, match="rawframes needs `test_list`"):
        build_index("rawframes", mm, "test")
