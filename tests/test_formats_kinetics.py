"""Kinetics: the real validate.csv (17,770 rows, 400 labels) with real clips in every layout."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from ssvrl.data.formats_kinetics import parse_kinetics_csv
from ssvrl.data.index import AnnotationError, VideoIndex, build_index
from ssvrl.data.video_reader import open_video

ROWS = 17770


@pytest.fixture(scope="module")
def validate(shared_data: Path) -> Path:
    return shared_data / "kinetics400" / "validate.csv"


@pytest.fixture(scope="module")
def rows(validate: Path) -> list[dict[str, str]]:
    with validate.open(newline="") as f:
        return list(csv.DictReader(f))


def _clip(row: dict[str, str]) -> str:
    return f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}"


def _test_index(root: Path, validate: Path, **kwargs: object) -> VideoIndex:
    return build_index("kinetics", root, "test", test_list=validate, **kwargs)  # type: ignore


def test_real_validate_csv_classes_and_names(
    validate: Path, rows: list[dict[str, str]], shared_data: Path, tmp_path: Path
) -> None:
    index = _test_index(tmp_path, validate, check_exists=False)
    assert len(index) == ROWS and index.missing == ()
    k400 = (shared_data / "mmaction2" / "label_maps" / "label_map_k400.txt").read_text()
    assert index.classes == tuple(k400.splitlines())  # sorted labels == mmaction2's order
    assert "punching person (boxing)" in index.classes
    first = index.records[0]  # javelin throw,--07WQ2iBlw,1,11,validate
    assert first.path == tmp_path.resolve() / "--07WQ2iBlw_000001_000011.mp4"
    assert index.classes[first.label] == "javelin throw"
    labels = [index.classes[r.label] for r in index.records]
    assert labels == [row["label"] for row in rows]


def test_clips_found_in_every_layout_rest_missing(
    validate: Path, rows: list[dict[str, str]], shared_data: Path, tmp_path: Path
) -> None:
    mm = shared_data / "mmaction2"
    boxing = next(r for r in rows if r["label"] == "punching person (boxing)")
    remote = next(r for r in rows if r["label"] == "using remote controller (not gaming)")
    javelin, pancake = rows[0], rows[1]
    placed = {  # row -> (folder, extension, real video)
        _clip(boxing): ("punching person (boxing)", ".mp4", mm / "rawvideo_part_0.mp4"),
        _clip(remote): ("using_remote_controller_(not_gaming)", ".mp4", mm / "test.mp4"),
        _clip(javelin): ("", ".mp4", mm / "demo.mp4"),  # flat in the root
        _clip(pancake): ("flipping_pancake", ".mkv", mm / "test.avi"),  # another container
    }
    for name, (folder, ext, video) in placed.items():
        (tmp_path / folder).mkdir(exist_ok=True)
        shutil.copy(video, tmp_path / folder / (name + ext))
    (tmp_path / "flipping_pancake" / "notes.txt").write_text("not a clip")
    index = _test_index(tmp_path, validate)
    assert len(index) == 4 and len(index.missing) == ROWS - 4
    found = {r.path.name.rsplit(".", 1)[0]: r for r in index.records}
    for name, (folder, ext, _) in placed.items():
        assert found[name].path == (tmp_path / folder / (name + ext)).resolve()
    assert index.classes[found[_clip(remote)].label] == remote["label"]
    with open_video(found[_clip(boxing)].path, "pyav") as reader:
        assert reader.num_frames == 32  # a real, decodable clip under its Kinetics name
    # missing clips are reported inside an existing class folder, else flat in the root
    other_boxing = next(
        r for r in rows if r["label"] == "punching person (boxing)" and r is not boxing
    )
    missing = set(index.missing)
    assert (tmp_path / "punching person (boxing)" / f"{_clip(other_boxing)}.mp4") in missing
    assert (tmp_path / f"{_clip(rows[2])}.mp4") in missing


def test_train_and_validate_share_class_ids(validate: Path, tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"zumba, advanced (indoor)",abcdefghijk,0,10,train,0\n'
        "abseiling,ABCDEFGHIJK,12,22,train,1\n"
    )
    shutil.copy(validate, tmp_path / "validate.csv")
    tr = build_index("kinetics", tmp_path, "train", annotations=tmp_path, check_exists=False)
    te = build_index("kinetics", tmp_path, "test", annotations=tmp_path, check_exists=False)
    assert tr.classes == te.classes and len(tr.classes) == 401  # a label only train has
    assert tr.classes[-1] == "zumba, advanced (indoor)"
    assert [tr.classes[r.label] for r in tr.records] == ["zumba, advanced (indoor)", "abseiling"]
    assert tr.records[1].path.name == "ABCDEFGHIJK_000012_000022.mp4"


def test_unlabeled_test_csv_and_column_order(tmp_path: Path) -> None:
    (tmp_path / "test.csv").write_text(
        "youtube_id,time_start,time_end,split\r\nxyz,7,17,test\r\n\r\nuvw,123456,123466,test\r\n"
    )
    (tmp_path / "uvw_123456_123466.webm").write_bytes(b"x")
    index = build_index("kinetics", tmp_path, "test", test_list=tmp_path / "test.csv")
    assert [(r.path.name, r.label) for r in index.records] == [("uvw_123456_123466.webm", -1)]
    assert index.missing == ((tmp_path / "xyz_000007_000017.mp4").resolve(),)
    assert index.classes == ()


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("label,time_start,time_end\nx,1,2\n", 1, "header must name youtube_id"),
        ("", None, "header must name youtube_id"),
        ("label,youtube_id,time_start,time_end\na,b,1\n", 2, "expected 4 fields"),
        ("label,youtube_id,time_start,time_end\na,b,1,2\na,c,1.5,2\n", 3, "whole seconds"),
        ("label,youtube_id,time_start,time_end\na, ,1,2\n", 2, "empty youtube_id"),
        ('label,youtube_id,time_start,time_end\n"a,b,1,2\n', 2, "bad CSV"),
        ("label,youtube_id,time_start,time_end\na,b,1,2\na,b,1,2\n", 3, "duplicate of line 2"),
        ("label,youtube_id,time_start,time_end\n..,b,1,2\n", 2, "outside the dataset root"),
    ],
)
def test_malformed_csv_names_file_and_line(
    tmp_path: Path, text: str, line: int | None, reason: str
) -> None:
    file = tmp_path / "validate.csv"
    file.write_text(text)
    (tmp_path / "root").mkdir()
    (tmp_path / "b_000001_000002.mp4").write_bytes(b"x")  # what the label .. would reach
    with pytest.raises(AnnotationError, match=reason) as info:
        build_index("kinetics", tmp_path / "root", "test", test_list=file)
    assert (info.value.file, info.value.line) == (file, line)


def test_parser_keeps_quoted_commas(tmp_path: Path) -> None:
    file = tmp_path / "k.csv"
    file.write_text('split,time_end,time_start,youtube_id,label\nval,20,10,-Ab_1,"a, b (c)"\n')
    [entry] = parse_kinetics_csv(file)
    assert (entry.rel, entry.label, entry.line) == ("-Ab_1_000010_000020", "a, b (c)", 2)


def test_needs_a_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kinetics needs `train_list`"):
        build_index("kinetics", tmp_path, "train")
    with pytest.raises(AnnotationError, match="not found"):
        build_index("kinetics", tmp_path, "train", annotations=tmp_path)
