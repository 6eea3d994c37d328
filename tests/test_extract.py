"""``ssvrl extract``: window arithmetic, streaming decode bounded by the chunk size, features equal
to the backbone on directly decoded windows, resumable output, corrupt videos counted.

Real files: ../shared/data/mmaction2/test.mp4 (300 frames, B-frames, 2 keyframes) and test.avi
(164 frames, XVID); references are decoded sequentially by the same backend in one call (decord
mis-seeks on some multi-keyframe AVI files, sequential reads are right).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import ssvrl.eval.window_stream as window_stream
from ssvrl.augment import AugmentConfig, VideoAugment
from ssvrl.backbones import build_backbone
from ssvrl.data.dataset import DecodeConfig, square_crop
from ssvrl.data.video_reader import VideoReader, VideoReadError, open_video
from ssvrl.eval.extract_inputs import VideoItem, videos_from_path
from ssvrl.eval.extract_output import ProtocolMismatch
from ssvrl.eval.sliding_features import StreamSettings, extract_videos
from ssvrl.eval.windows import WindowSpec, chunk_groups, window_indices, window_starts

SPEC = WindowSpec(frames=4, stride=3, window_stride=7)  # span 10: windows overlap
CHUNK = 32
PROTOCOL = {"test": "extract"}
Model = tuple[torch.nn.Module, VideoAugment]  # a tiny encoder and the eval transform


@pytest.mark.parametrize(
    ("n", "tail", "expected"),
    [
        (300, "align_end", [0, 29, 58, 87, 116, 145, 174, 203, 232, 261, 271]),
        (300, "pad", [0, 29, 58, 87, 116, 145, 174, 203, 232, 261, 290]),
        (300, "drop", [0, 29, 58, 87, 116, 145, 174, 203, 232, 261]),
        (87, "align_end", [0, 29, 58]),  # the grid ends on the last frame: no extra window
        (87, "pad", [0, 29, 58]),
        (20, "align_end", [0]),  # shorter than one window
        (20, "pad", [0]),
        (20, "drop", []),
    ],
)
def test_window_starts_follow_the_formula(n: int, tail: str, expected: list[int]) -> None:
    spec = WindowSpec(frames=8, stride=4, window_stride=29, tail=tail)  # type: ignore[arg-type]
    assert spec.span == 29
    assert window_starts(n, spec).tolist() == expected


def test_windows_with_gaps_and_clamped_indices() -> None:
    gaps = WindowSpec(frames=4, stride=1, window_stride=50)  # span 4, windows 50 apart
    assert window_starts(100, gaps).tolist() == [0, 50, 96]
    pad = WindowSpec(frames=4, stride=1, window_stride=50, tail="pad")
    assert window_starts(100, pad).tolist() == [0, 50]  # 100 would start past the end
    short = WindowSpec(frames=4, stride=3, window_stride=10)
    assert window_indices(window_starts(7, short), 7, short).tolist() == [[0, 3, 6, 6]]


def test_chunk_groups_bound_the_frames_of_each_group() -> None:
    spec = WindowSpec(frames=4, stride=1, window_stride=2)
    idx = window_indices(window_starts(20, spec), 20, spec)  # 9 windows of 4 frames
    groups = chunk_groups(idx, 6)
    assert groups == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]
    assert all(len(np.unique(idx[a:b])) <= 6 for a, b in groups)
    with pytest.raises(ValueError, match="chunk_frames"):
        chunk_groups(idx, 3)


def test_inputs_from_folder_and_list(tmp_path: Path) -> None:
    (tmp_path / "a" / "frames_v").mkdir(parents=True)
    (tmp_path / "a" / "frames_v" / "img_00001.jpg").write_bytes(b"")
    (tmp_path / "a" / "frames_v" / "inner.mp4").write_bytes(b"")  # inside a frame folder
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "hidden.mp4").write_bytes(b"")
    for name in ("a/x.mp4", "b.avi", "b.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found = {i.feature.as_posix(): i.path.relative_to(tmp_path).as_posix()
             for i in videos_from_path(tmp_path)}  # fmt: skip
    assert found == {
        "a/frames_v.npy": "a/frames_v",
        "a/x.npy": "a/x.mp4",
        "b.avi.npy": "b.avi",  # b.avi and b.mp4 would clash: both keep their extension
        "b.mp4.npy": "b.mp4",
    }
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a comment\n\na/x.mp4\n{tmp_path / 'b.avi'}\n")
    assert [i.feature.as_posix() for i in videos_from_path(listing)] == ["a/x.npy", "b.npy"]
    assert [i.feature for i in videos_from_path(tmp_path / "a" / "frames_v")] == [
        Path("frames_v.npy")
    ]
    with pytest.raises(ValueError, match="no such"):
        videos_from_path(tmp_path / "absent")


@pytest.fixture(scope="module")
def mm(shared_data: Path) -> Path:
    folder = shared_data / "mmaction2"
    if not (folder / "test.mp4").is_file() or not (folder / "test.avi").is_file():
        pytest.skip(f"mmaction2 test videos not found in {folder}")
    return folder


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    """A tiny encoder (D = 32). One torch thread: tiny convolutions run ~20x slower with two
    threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    backbone = build_backbone("small3d", width=4).eval()
    yield backbone, VideoAugment(AugmentConfig(crop_size=32))
    torch.set_num_threads(threads)


class _CountingReader(VideoReader):
    """Wraps a reader; records the size of every decode call, optionally fails call ``fail``."""

    def __init__(self, inner: VideoReader, calls: list[int], fail: int | None) -> None:
        self.inner, self.calls, self.fail = inner, calls, fail
        self.path, self.num_frames, self.fps, self.size = (
            inner.path, inner.num_frames, inner.fps, inner.size
        )  # fmt: skip

    def get_frames(self, indices: list[int]) -> torch.Tensor:  # type: ignore[override]
        self.calls.append(len(indices))
        if self.fail is not None and len(self.calls) == self.fail:
            raise VideoReadError(self.path, "injected failure")
        return self.inner.get_frames(indices)

    def frame_times(self) -> np.ndarray:
        return self.inner.frame_times()

    def close(self) -> None:
        self.inner.close()


class _Calls:
    """Frames per decode call, by file name, of every video the stream opens; files named in
    ``fail`` fail on their second decode call."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}
        self.fail: set[str] = set()


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Calls]:
    calls = _Calls()

    def counting_open(path: Path, *args: object, **kwargs: object) -> VideoReader:
        reader = open_video(path, *args, **kwargs)  # type: ignore[arg-type]
        name = Path(path).name
        fail = 2 if name in calls.fail else None
        return _CountingReader(reader, calls.counts.setdefault(name, []), fail)

    monkeypatch.setattr(window_stream, "open_video", counting_open)
    yield calls


def _run(
    items: list[VideoItem],
    out: Path,
    model: Model,
    backend: str = "decord",
    protocol: dict[str, str] = PROTOCOL,
) -> dict:
    decode = DecodeConfig(backend=backend, short_side=64, timeout=60.0)  # type: ignore[arg-type]
    settings = StreamSettings(decode, batch_size=3, chunk_frames=CHUNK, num_workers=0)
    backbone, aug = model
    return extract_videos(items, out, backbone, aug.eval_transform, SPEC, settings, protocol)


@torch.no_grad()
def _reference(path: Path, backend: str, model: Model) -> tuple[np.ndarray, int]:
    """Features of every window from one sequential decode of the whole video."""
    backbone, aug = model
    with open_video(path, backend, short_side=64) as reader:  # type: ignore[arg-type]
        n = reader.num_frames
        frames = reader.get_frames(list(range(n)))  # (N, H, W, 3)
    idx = window_indices(window_starts(n, SPEC), n, SPEC)  # (W, T)
    clips = torch.stack([square_crop(frames[torch.from_numpy(i)], None) for i in idx])
    return backbone(aug.eval_transform(clips)).numpy(), n  # (W, D)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_features_equal_backbone_on_directly_decoded_windows(
    mm: Path, tmp_path: Path, model: Model, decode_calls: _Calls, backend: str
) -> None:
    items = [VideoItem(mm / "test.mp4", Path("sub/test.npy")), VideoItem(mm / "test.avi",
             Path("test_avi.npy"))]  # fmt: skip
    summary = _run(items, tmp_path, model, backend)
    assert summary["num_written"] == 2 and summary["num_bad"] == 0
    rows = {r["feature"]: r for r in summary["videos"]}
    for item in items:
        ref, n = _reference(item.path, backend, model)
        got = np.load(tmp_path / item.feature)
        assert got.shape == (len(window_starts(n, SPEC)), 4 * 8) == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        row = rows[item.feature.as_posix()]
        assert row["starts"] == window_starts(n, SPEC).tolist()
        assert row["num_frames"] == n and row["num_windows"] == len(got)
        assert row["start_times"][1] == pytest.approx(7 / row["fps"], abs=1e-3)
        calls = decode_calls.counts[item.path.name]
        assert max(calls) <= CHUNK and len(calls) > 1  # streamed in bounded chunks
        needed = np.unique(window_indices(window_starts(n, SPEC), n, SPEC))
        assert sum(calls) == len(needed)  # each needed frame decoded once, kept across chunks
    saved = json.loads((tmp_path / "extract.json").read_text())
    assert saved["protocol"] == PROTOCOL and saved["num_written"] == 2


def test_rerun_skips_finished_videos(
    mm: Path, tmp_path: Path, model: Model, decode_calls: _Calls
) -> None:
    short = mm / "rawvideo_part_0.mp4"  # 32 frames: a cheap second video
    items = [VideoItem(short, Path("a.npy")), VideoItem(mm / "test.avi", Path("b.npy"))]
    first = _run(items, tmp_path, model)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    decode_calls.counts.clear()
    second = _run(items, tmp_path, model)
    assert second["num_kept"] == 2 and second["num_written"] == 0
    assert decode_calls.counts == {}  # not even opened
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")} == stamps
    assert second["videos"] == first["videos"]
    (tmp_path / "b.npy").unlink()
    third = _run(items, tmp_path, model)
    assert third["num_written"] == 1 and set(decode_calls.counts) == {"test.avi"}
    with pytest.raises(ProtocolMismatch, match="another protocol"):
        _run(items, tmp_path, model, protocol={"test": "other"})


def test_workers_give_the_same_arrays(mm: Path, tmp_path: Path, model: Model) -> None:
    items = [VideoItem(mm / "rawvideo_part_0.mp4", Path("a.npy")),
             VideoItem(mm / "test.avi", Path("b.npy"))]  # fmt: skip
    _run(items, tmp_path / "w0", model)
    decode = DecodeConfig(short_side=64, timeout=60.0)
    settings = StreamSettings(decode, batch_size=3, chunk_frames=CHUNK, num_workers=2)
    backbone, aug = model
    extract_videos(items, tmp_path / "w2", backbone, aug.eval_transform, SPEC, settings, PROTOCOL)
    for name in ("a.npy", "b.npy"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "w0" / name), np.load(tmp_path / "w2" / name)
        )


def test_corrupt_videos_are_counted_and_the_others_written(
    mm: Path, tmp_path: Path, model: Model, decode_calls: _Calls,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    videos = tmp_path / "videos"
    videos.mkdir()
    data = (mm / "test.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index atom lost
    shutil.copy(mm / "test.mp4", videos / "fails_midway.mp4")
    shutil.copy(mm / "test.avi", videos / "good.avi")
    decode_calls.fail.add("fails_midway.mp4")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="ssvrl"):
        summary = _run(videos_from_path(videos), out, model)
    assert summary["num_bad"] == 2 and summary["num_written"] == 1
    assert sorted(b["feature"] for b in summary["bad_videos"]) == [
        "fails_midway.npy", "truncated.npy"
    ]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["extract.json", "good.npy"]  # no temp files
    warned = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warned) == 2 and any("truncated.mp4" in w for w in warned)


def test_cli_extract_end_to_end(mm: Path, tmp_path: Path) -> None:
    from ssvrl.cli import main

    config = str(Path(__file__).resolve().parents[1] / "experiments" / "cvrl" / "quickstart.yaml")
    videos = tmp_path / "videos"
    (videos / "cls").mkdir(parents=True)
    shutil.copy(mm / "rawvideo_part_0.mp4", videos / "cls" / "short.mp4")
    (videos / "broken.mp4").write_bytes((mm / "test.mp4").read_bytes()[:50_000])
    out = tmp_path / "out"
    args = ["extract", config, "extract.checkpoint=random", "backbone.width=4"]
    args.append("data.num_workers=0")
    rc = main([*args, "extract.window_stride=5", "--out", str(out), "--videos", str(videos)])
    assert rc == 1  # a video was unreadable: listed, and the exit code says so
    summary = json.loads((out / "extract.json").read_text())
    # quickstart's view: 8 frames at stride 4 (span 29); 32 frames -> starts 0 and 3 (aligned)
    assert np.load(out / "cls" / "short.npy").shape == (2, 32)
    assert summary["videos"][0]["starts"] == [0, 3]
    assert [b["feature"] for b in summary["bad_videos"]] == ["broken.npy"]
    assert summary["protocol"]["checkpoint"] == "random" and summary["protocol"]["frames"] == 8
    changed = [*args, "extract.window_stride=6", "--out", str(out), "--videos", str(videos)]
    assert main(changed) == 2  # another protocol into the same folder: refused
    small_chunk = [*args, "extract.chunk_frames=4", "--videos", str(videos)]
    assert main([*small_chunk, "--out", str(tmp_path / "o2")]) == 2  # 4 < 8 frames a window
