"""ssvrl.data.index: the official UCF101 split files, hand-written CSVs, and hostile paths."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ssvrl.data.index import AnnotationError, VideoIndex, VideoRecord, build_index

COUNTS = {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}


@pytest.fixture(scope="module")
def splits(shared_data: Path) -> Path:
    return shared_data / "ucf101_splits"


def _ucf(root: Path, subset: str, annotations: Path, **kwargs: object) -> VideoIndex:
    return build_index("ucf101", root, subset, annotations=annotations, **kwargs)  # type: ignore


@pytest.mark.parametrize("split", [1, 2, 3])
def test_official_ucf101_splits(splits: Path, tmp_path: Path, split: int) -> None:
    for subset, count in zip(("train", "test"), COUNTS[split], strict=False):
        index = _ucf(tmp_path, subset, splits, split=split, check_exists=False)
        assert len(index) == count and index.missing == ()
        assert len(index.classes) == 101 and index.classes[0] == "ApplyEyeMakeup"
        assert {r.label for r in index.records} == set(range(101))
        assert all(r.path.parent.parent == tmp_path.resolve() for r in index.records)
        assert all(r.path.suffix == ".avi" for r in index.records)  # CRLF stripped
        for record in index.records[::500]:  # the label is the class of the folder
            assert index.classes[record.label] == record.path.parent.name


def test_handstand_pushups_case_quirk(splits: Path, tmp_path: Path) -> None:
    """classInd and folders say HandstandPushups, the files v_HandStandPushups_*: kept as listed."""
    for subset in ("train", "test"):
        index = _ucf(tmp_path, subset, splits, check_exists=False)
        hand = [r for r in index.records if r.path.parent.name == "HandstandPushups"]
        assert hand and {r.label for r in hand} == {36}
        assert index.classes[36] == "HandstandPushups"
        assert all(r.path.name.startswith("v_HandStandPushups_g") for r in hand)


def test_missing_files_are_reported_not_fatal(splits: Path, tmp_path: Path) -> None:
    present = [
        "HandstandPushups/v_HandStandPushups_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "YoYo/v_YoYo_g25_c05.avi",
    ]
    for rel in present:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    index = _ucf(tmp_path, "train", splits)
    expected = sorted((tmp_path / rel).resolve() for rel in present)
    assert sorted(r.path for r in index.records) == expected
    assert sorted(r.label for r in index.records) == [0, 36, 100]
    assert len(index.missing) == 9537 - 3 and index.missing[0].is_absolute()
    assert index.root == tmp_path.resolve()


def _write_ucf(
    folder: Path, train: str, test: str = "", classes: str = "1 Alpha\r\n2 Beta\r\n"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classInd.txt").write_bytes(classes.encode())
    (folder / "trainlist01.txt").write_bytes(train.encode())
    (folder / "testlist01.txt").write_bytes(test.encode())
    return folder


def test_ucf101_whitespace_and_case_insensitive_folders(tmp_path: Path) -> None:
    ann = _write_ucf(
        tmp_path / "ann",
        "\r\nAlpha/v_a.avi 1  \r\n\r\n  Beta/v_b.avi 2\r\n",
        "ALPHA/v_c.avi\r\nbeta/v_d.avi \r\n",
    )
    train = _ucf(tmp_path / "root", "train", ann, check_exists=False)
    test = _ucf(tmp_path / "root", "test", ann, check_exists=False)
    assert [(r.path.name, r.label) for r in train.records] == [("v_a.avi", 0), ("v_b.avi", 1)]
    assert [(r.path.name, r.label) for r in test.records] == [("v_c.avi", 0), ("v_d.avi", 1)]
    assert train.classes == test.classes == ("Alpha", "Beta")


@pytest.mark.parametrize(
    "train, line, reason",
    [
        ("Alpha/v_a.avi 1\r\nBeta/v_b.avi 1\r\n", 2, "disagrees with class folder 'Beta'"),
        ("Alpha/v_a.avi 1\nAlpha/v_b.avi 7\n", 2, "class id in 1..2"),
        ("Alpha/v_a.avi one\n", 1, "class id in 1..2"),
        ("\nAlpha/v_a.avi 1 extra\n", 2, "expected"),
        ("Alpha/v_a.avi\n", 1, "expected"),
        ("Gamma/v_a.avi 1\n", 1, "class folder"),
        ("v_a.avi 1\n", 1, "class folder"),
        ("Alpha/v_a.avi 1\nAlpha/v_b.avi 1\nAlpha/./v_a.avi 1\n", 3, "duplicate of line 1"),
        ("Alpha/../../x.avi 1\n", 1, "outside the dataset root"),
    ],
)
def test_ucf101_errors_name_file_and_line(
    tmp_path: Path, train: str, line: int, reason: str
) -> None:
    ann = _write_ucf(tmp_path / "ann", train)
    with pytest.raises(AnnotationError, match=reason) as info:
        _ucf(tmp_path / "root", "train", ann, check_exists=False)
    file = ann / "trainlist01.txt"
    assert (info.value.file, info.value.line) == (file, line)
    assert str(info.value).startswith(f"{file}:{line}: ")
    bad_text = train.splitlines()[line - 1].strip()
    assert repr(bad_text) in str(info.value)


@pytest.mark.parametrize("split", [0, 4, "1", True])
def test_bad_split(splits: Path, tmp_path: Path, split: object) -> None:
    with pytest.raises(AnnotationError, match="split must be 1, 2 or 3"):
        _ucf(tmp_path, "train", splits, split=split, check_exists=False)


def test_bad_class_index_and_missing_list(tmp_path: Path) -> None:
    ann = _write_ucf(tmp_path / "a", "", classes="1 Alpha\n3 Beta\n")
    with pytest.raises(AnnotationError, match="without gaps"):
        _ucf(tmp_path, "train", ann)
    ann = _write_ucf(tmp_path / "b", "", classes="1 Alpha\n1 Beta\n")
    with pytest.raises(AnnotationError, match="also on line 1") as info:
        _ucf(tmp_path, "train", ann)
    assert info.value.line == 2
    ann = _write_ucf(tmp_path / "c", "")
    with pytest.raises(AnnotationError, match="not found") as info:
        _ucf(tmp_path, "train", ann, split=2)
    assert info.value.file == ann / "trainlist02.txt"


def _csv_lists(tmp_path: Path, train: str, test: str) -> tuple[Path, Path]:
    (tmp_path / "train.csv").write_bytes(train.encode())
    (tmp_path / "test.csv").write_bytes(test.encode())
    return tmp_path / "train.csv", tmp_path / "test.csv"


def test_csv_class_names_with_quotes_and_commas(tmp_path: Path) -> None:
    train, test = _csv_lists(
        tmp_path,
        'path,label\r\n"clips/a, b.mp4","zebra, plains"\r\n\r\nclips/c.mp4,ant\r\n',
        'clips/d.mp4,"zebra, plains"\nclips/e.mp4,bee\nclips/f.mp4\n',
    )
    root = tmp_path / "root"
    tr = build_index("csv", root, "train", train_list=train, test_list=test, check_exists=False)
    te = build_index("csv", root, "test", train_list=train, test_list=test, check_exists=False)
    assert tr.classes == te.classes == ("ant", "bee", "zebra, plains")  # sorted over both lists
    assert [(r.path.name, r.label) for r in tr.records] == [("a, b.mp4", 2), ("c.mp4", 0)]
    assert [r.label for r in te.records] == [2, 1, -1]  # unlabeled row -> -1
    assert tr.records[0].path == (root / "clips" / "a, b.mp4").resolve()
    by_folder = build_index("csv", root, "train", annotations=tmp_path, check_exists=False)
    assert by_folder == tr  # default file names annotations/train.csv, test.csv


def test_csv_integer_labels(tmp_path: Path) -> None:
    train, test = _csv_lists(tmp_path, "x/a.mp4,3\nx/b.mp4,0\n", "x/c.mp4,1\n")
    index = build_index(
        "csv", tmp_path, "train", train_list=train, test_list=test, check_exists=False
    )
    assert [r.label for r in index.records] == [3, 0]
    assert index.classes == ("0", "1", "2", "3")


@pytest.mark.parametrize(
    "row, reason",
    [
        ("x/a.mp4,1,extra", "expected 'path,label'"),
        ("x/a.mp4,ant", "mix integer ids and class names"),
        ("x/a.mp4,-2", ">= 0"),
        (",3", "expected 'path,label'"),
        ('"x/a.mp4,3', "bad CSV|expected"),
    ],
)
def test_csv_malformed_rows(tmp_path: Path, row: str, reason: str) -> None:
    train, test = _csv_lists(tmp_path, f"path,label\nx/ok.mp4,1\n{row}\n", "")
    with pytest.raises(AnnotationError, match=reason) as info:
        build_index("csv", tmp_path, "train", train_list=train, test_list=test, check_exists=False)
    assert info.value.file == train and info.value.line == 3


@pytest.mark.parametrize(
    "bad",
    [
        "../escape.mp4",
        "x/../../escape.mp4",
        "/etc/passwd",
        "link/inside.mp4",
        "outside_link.mp4",
        ".",
    ],
)
def test_paths_escaping_the_root_are_rejected(tmp_path: Path, bad: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "x").mkdir(parents=True)
    outside.mkdir()
    (outside / "inside.mp4").write_bytes(b"x")
    (root / "link").symlink_to(outside)  # a folder symlink leading out
    (root / "outside_link.mp4").symlink_to(outside / "inside.mp4")
    train, test = _csv_lists(tmp_path, f"x/fine.mp4,0\n{bad},0\n", "")
    with pytest.raises(AnnotationError, match="outside the dataset root") as info:
        build_index("csv", root, "train", train_list=train, test_list=test)
    assert str(info.value).startswith(f"{train}:2: ")


def test_symlink_inside_root_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "v.mp4").write_bytes(b"x")
    (tmp_path / "alias.mp4").symlink_to(tmp_path / "real" / "v.mp4")
    train, test = _csv_lists(tmp_path, "alias.mp4,0\n", "")
    index = build_index("csv", tmp_path, "train", train_list=train, test_list=test)
    assert index.records == (VideoRecord((tmp_path / "real" / "v.mp4").resolve(), 0),)


def test_duplicates_name_both_lines(tmp_path: Path) -> None:
    train, test = _csv_lists(tmp_path, "a/x.mp4,0\nb/y.mp4,0\na/b/../x.mp4,1\n", "")
    (tmp_path / "a" / "b").mkdir(parents=True)
    with pytest.raises(AnnotationError, match="duplicate of line 1") as info:
        build_index("csv", tmp_path, "train", train_list=train, test_list=test)
    assert info.value.line == 3


def test_error_type_and_arguments(tmp_path: Path) -> None:
    err = pickle.loads(pickle.dumps(AnnotationError(Path("l.txt"), 4, "bad label", "a 9")))
    assert isinstance(err, ValueError) and str(err) == "l.txt:4: bad label: 'a 9'"
    with pytest.raises(ValueError, match="unknown annotation format"):
        build_index("webdataset", tmp_path, "train")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="subset"):
        build_index("csv", tmp_path, "val", annotations=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="annotations"):
        build_index("ucf101", tmp_path, "train")
    with pytest.raises(AnnotationError, match="not found"):
        build_index("csv", tmp_path, "train", annotations=tmp_path)
