"""HMDB51: split files in the official ``<class>_test_split<k>.txt`` format, real class names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ssvrl.data.index import AnnotationError, build_index

# Names as they appear in the release: punctuation, '#', '!', parentheses, mixed case.
ODD_NAMES = ["#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi", "(Freestyle)_kick_f_cm_np1_le_bad_8.avi"]


@pytest.fixture(scope="module")
def hmdb_classes(shared_data: Path) -> list[str]:
    text = (shared_data / "mmaction2" / "label_maps" / "label_map_hmdb51.txt").read_text()
    return text.splitlines()


def _write_splits(folder: Path, classes: list[str], split: int = 1) -> dict[str, list[str]]:
    """Per class 3 train, 2 test, 1 unused video; LF endings, trailing space as released."""
    folder.mkdir(parents=True, exist_ok=True)
    usage = {"train": [], "test": []}  # type: dict[str, list[str]]
    for cls in classes:
        names = [f"Clip_{cls}_u_nm_np1_fr_med_{j}.avi" for j in range(6)]
        codes = ["1", "2", "1", "0", "2", "1"]
        lines = [f"{name} {code} \n" for name, code in zip(names, codes, strict=True)]
        (folder / f"{cls}_test_split{split}.txt").write_text("".join(lines))
        usage["train"] += [f"{cls}/{n}" for n, c in zip(names, codes, strict=True) if c == "1"]
        usage["test"] += [f"{cls}/{n}" for n, c in zip(names, codes, strict=True) if c == "2"]
    return usage


def test_51_classes_in_mmaction2_order(hmdb_classes: list[str], tmp_path: Path) -> None:
    ann = tmp_path / "splits"
    usage = _write_splits(ann, hmdb_classes[::-1])  # written in any order
    _write_splits(ann, hmdb_classes[:5], split=2)  # other splits are not read
    root = tmp_path / "videos"
    for subset, count in (("train", 3 * 51), ("test", 2 * 51)):
        index = build_index("hmdb51", root, subset, annotations=ann, check_exists=False)  # type: ignore[arg-type]
        assert index.classes == tuple(hmdb_classes) and len(index.classes) == 51
        assert len(index) == count
        rel = [str(r.path.relative_to(root.resolve())) for r in index.records]
        assert sorted(rel) == sorted(usage[subset])
        for record in index.records:
            assert index.classes[record.label] == record.path.parent.name
    assert index.classes[0] == "brush_hair" and index.classes[50] == "wave"


def test_split_choice_and_missing_videos(shared_data: Path, tmp_path: Path) -> None:
    ann = tmp_path / "splits"
    ann.mkdir()
    for k, code in ((1, "1"), (2, "2"), (3, "0")):
        (ann / f"clap_test_split{k}.txt").write_text(f"{ODD_NAMES[0]} {code} \nother.avi 1\n")
        (ann / f"kick_test_split{k}.txt").write_text(f"{ODD_NAMES[1]} 2\n")
    root = tmp_path / "videos"
    (root / "clap").mkdir(parents=True)
    shutil.copy(shared_data / "mmaction2" / "test.avi", root / "clap" / ODD_NAMES[0])
    train1 = build_index("hmdb51", root, "train", annotations=ann, split=1)
    assert [r.path.name for r in train1.records] == [ODD_NAMES[0]]
    assert train1.missing == ((root / "clap" / "other.avi").resolve(),)
    test2 = build_index("hmdb51", root, "test", annotations=ann, split=2)
    assert [r.path.name for r in test2.records] == [ODD_NAMES[0]]
    assert [(p.parent.name, p.name) for p in test2.missing] == [("kick", ODD_NAMES[1])]
    assert [r.label for r in test2.records] == [0] and test2.classes == ("clap", "kick")
    train3 = build_index("hmdb51", root, "train", annotations=ann, split=3)
    assert len(train3.records) == 0 and len(train3.missing) == 1  # usage 0: not in split 3


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("a.avi 1\nb.avi 3\n", 2, "expected '<video name> 0|1|2'"),
        ("a.avi\n", 1, "expected"),
        ("\n\na.avi 1 extra\n", 3, "expected"),
        ("a.avi 1\nsub/b.avi 1\n", 2, "plain file name"),
        ("..  1\n", 1, "plain file name"),
        ("a.avi 1\r\na.avi 1\r\n", 2, "duplicate of line 1"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    (tmp_path / "ann").mkdir()
    file = tmp_path / "ann" / "clap_test_split1.txt"
    file.write_text(text)
    with pytest.raises(AnnotationError, match=reason) as info:
        build_index("hmdb51", tmp_path, "train", annotations=tmp_path / "ann", check_exists=False)
    assert (info.value.file, info.value.line) == (file, line)


def test_bad_split_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="no '<class>_test_split2.txt' files"):
        build_index("hmdb51", tmp_path, "train", annotations=tmp_path, split=2)
    for split in (0, 4, True):
        with pytest.raises(AnnotationError, match="split must be 1, 2 or 3"):
            build_index("hmdb51", tmp_path, "train", annotations=tmp_path, split=split)
    with pytest.raises(ValueError, match="hmdb51 needs `annotations`"):
        build_index("hmdb51", tmp_path, "train")
    with pytest.raises(AnnotationError, match="cannot list"):
        build_index("hmdb51", tmp_path, "train", annotations=tmp_path / "absent")
