"""Folder-per-class datasets: scanning, frame folders as videos, hash split and path lists."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from ssvrl.data._frames_backend import FrameFolderReader
from ssvrl.data.formats_folder import in_test_split
from ssvrl.data.index import AnnotationError, VideoIndex, build_index
from ssvrl.data.video_reader import open_video

VIDEOS = ["Brush/a.avi", "Brush/B.MP4", "Brush/frames_v1", "clap/c.webm"]


@pytest.fixture
def root(shared_data: Path, tmp_path: Path) -> Path:
    mm, root = shared_data / "mmaction2", tmp_path / "root"
    for folder in ("Brush", "clap", "empty_class", ".cache", "Brush/no_frames"):
        (root / folder).mkdir(parents=True)
    shutil.copy(mm / "test.avi", root / "Brush" / "a.avi")
    shutil.copy(mm / "rawvideo_part_0.mp4", root / "Brush" / "B.MP4")
    shutil.copytree(mm / "imgs", root / "Brush" / "frames_v1")  # a frame folder
    shutil.copy(mm / "test.mp4", root / "clap" / "c.webm")
    for ignored in ("Brush/notes.txt", "Brush/.hidden.mp4", ".cache/x.mp4", "top.mp4"):
        (root / ignored).write_bytes(b"x")
    (root / "Brush" / "no_frames" / "x_00001.jpg").write_bytes(b"x")  # flow only: not a video
    return root


def _folder(root: Path, subset: str, **kwargs: object) -> VideoIndex:
    return build_index("folder", root, subset, **kwargs)  # type: ignore[arg-type]


def test_scan_finds_videos_and_frame_folders(root: Path) -> None:
    index = _folder(root, "train", test_fraction=0.0)
    assert index.classes == ("Brush", "clap", "empty_class")  # sorted, hidden skipped
    rel = [str(r.path.relative_to(root.resolve())) for r in index.records]
    assert sorted(rel) == sorted(VIDEOS) and index.missing == ()
    assert [r.label for r in index.records] == [0, 0, 0, 1]
    assert _folder(root, "test", test_fraction=0.0).records == ()
    frames = next(r for r in index.records if r.path.name == "frames_v1")
    with open_video(frames.path, "pyav", short_side=64) as reader:
        assert isinstance(reader, FrameFolderReader) and reader.num_frames == 10
    with open_video(index.records[0].path, "pyav") as reader:  # Brush/B.MP4: a real file
        assert reader.num_frames == 32


def test_hash_split_is_deterministic_and_disjoint(root: Path) -> None:
    for n in range(300):
        (root / "clap" / f"v{n:03d}.mp4").write_bytes(b"x")
    train = _folder(root, "train", test_fraction=0.25)
    test = _folder(root, "test", test_fraction=0.25)
    train_paths = {r.path for r in train.records}
    test_paths = {r.path for r in test.records}
    assert not train_paths & test_paths and len(train_paths | test_paths) == 304
    assert 0.17 < len(test_paths) / 304 < 0.33
    for record in test.records:  # the documented rule, recomputed independently
        rel = record.path.relative_to(root.resolve()).as_posix()
        value = int.from_bytes(hashlib.sha1(rel.encode()).digest()[:8], "big")
        assert value < 0.25 * 2**64
    (root / "clap" / "v000.mp4").unlink()  # removing a video moves no other video
    again = _folder(root, "test", test_fraction=0.25)
    assert {r.path for r in again.records} == test_paths - {(root / "clap/v000.mp4").resolve()}
    assert in_test_split("clap/v001.mp4", 1.0) and not in_test_split("clap/v001.mp4", 0.0)


def test_path_lists(root: Path, tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("Brush/a.avi\r\nclap/c.webm\r\nclap/gone.mp4\r\n")
    (tmp_path / "test.txt").write_text("Brush/frames_v1\n\nBrush/B.MP4  \n")
    lists = {"train_list": tmp_path / "train.txt", "test_list": tmp_path / "test.txt"}
    train = _folder(root, "train", **lists)
    assert [(r.path.name, r.label) for r in train.records] == [("a.avi", 0), ("c.webm", 1)]
    assert train.missing == ((root / "clap" / "gone.mp4").resolve(),)
    test = _folder(root, "test", **lists)
    assert [r.path.name for r in test.records] == ["frames_v1", "B.MP4"]
    with pytest.raises(ValueError, match="both `train_list` and `test_list`"):
        _folder(root, "test", train_list=tmp_path / "train.txt")


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("Brush/a.avi\nGamma/x.mp4\n", 2, "does not start with a class folder"),
        ("a.avi\n", 1, "does not start with a class folder"),
        ("Brush/a.avi\nBrush/./a.avi\n", 2, "duplicate of line 1"),
        ("clap/../../x.mp4\n", 1, "outside the dataset root"),
    ],
)
def test_list_errors(root: Path, tmp_path: Path, text: str, line: int, reason: str) -> None:
    (tmp_path / "train.txt").write_text(text)
    (tmp_path / "test.txt").write_text("")
    with pytest.raises(AnnotationError, match=reason) as info:
        _folder(root, "train", train_list=tmp_path / "train.txt", test_list=tmp_path / "test.txt")
    assert (info.value.file, info.value.line) == (tmp_path / "train.txt", line)


def test_scan_duplicates_and_bad_settings(root: Path, tmp_path: Path) -> None:
    (root / "clap" / "alias.mp4").symlink_to(root / "clap" / "c.webm")
    with pytest.raises(AnnotationError, match="duplicate of clap/c.webm|duplicate of clap/alias"):
        _folder(root, "train", test_fraction=0.0)
    with pytest.raises(ValueError, match="test_fraction"):
        _folder(root, "train", test_fraction=1.5)
    with pytest.raises(AnnotationError, match="cannot list the dataset root"):
        _folder(tmp_path / "absent", "train")
