"""Decode policy of the datasets: timeouts, repeated augmentation, sampling by time or rate."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ssvrl.data import dataset as dataset_mod
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.datamodule import PretrainDataModule
from ssvrl.data.dataset import DecodeConfig, PretrainDataset, collate_samples, read_views
from ssvrl.data.epoch_sampler import EpochSampler
from ssvrl.data.index import VideoIndex, VideoRecord
from ssvrl.data.sampling import IntervalPairSampler, RandomClipSampler, TemporalView
from ssvrl.data.video_reader import open_video
from ssvrl.data.watchdog import CallTimeout, Watchdog

V1, V2 = TemporalView("clip1", 4, 2), TemporalView("clip2", 4, 2)
BASE, STEP = 20, 28  # grey levels of the two base-8 digits of a frame's number


def write_numbered(path: Path, pts_ms: list[int], size: int = 64) -> None:
    """An H.264 MP4 whose frame k shows its number k (two grey halves) at ``pts_ms[k]``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "10", "bf": "0", "g": "8"}
        for k, pts in enumerate(pts_ms):
            img = np.empty((size, size, 3), dtype=np.uint8)
            img[:, : size // 2] = BASE + STEP * (k // 8)  # frame number in base 8, one
            img[:, size // 2 :] = BASE + STEP * (k % 8)  # digit per half: survives the codec
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def frame_numbers(clip: torch.Tensor) -> list[int]:
    """Which numbered frames a ``(T, H, W, 3)`` or ``(3, T, H, W)`` clip holds."""
    frames = clip.float() if clip.shape[-1] == 3 else clip.float().permute(1, 2, 3, 0)
    W = frames.shape[2]  # frames: (T, H, W, 3)
    high = ((frames[:, :, : W // 2 - 2].mean(dim=(1, 2, 3)) - BASE) / STEP).round()
    low = ((frames[:, :, W // 2 + 2 :].mean(dim=(1, 2, 3)) - BASE) / STEP).round()
    return (high * 8 + low).int().tolist()


def index_of(paths: list[Path]) -> VideoIndex:
    root = paths[0].parent
    return VideoIndex(
        root, tuple(VideoRecord(p, i % 2) for i, p in enumerate(paths)), ("a", "b"), ()
    )


@pytest.fixture()
def numbered(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(4):
        path = tmp_path / f"v{i}.mp4"
        write_numbered(path, [round(k * 1000 / 30) for k in range(30)])
        paths.append(path)
    return paths


# --- watchdog -------------------------------------------------------------------------------


def test_watchdog_returns_raises_and_times_out() -> None:
    dog = Watchdog(0.3)
    assert dog.call(lambda: 7) == 7
    with pytest.raises(KeyError):
        dog.call(lambda: {}["x"])
    release = threading.Event()
    start = time.monotonic()
    with pytest.raises(CallTimeout):
        dog.call(release.wait)  # hangs until released
    assert time.monotonic() - start < 2.0 and dog.abandoned == 1
    assert dog.call(lambda: "fresh thread") == "fresh thread"  # not stuck behind the hang
    release.set()


def test_hanging_decode_is_a_bad_video(
    numbered: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung = numbered[1]
    real_open, release = dataset_mod.open_video, threading.Event()

    def open_or_hang(path, **kwargs):
        if Path(path) == hung:
            release.wait(30)  # a decoder stuck on a broken file
        return real_open(path, **kwargs)

    monkeypatch.setattr(dataset_mod, "open_video", open_or_hang)
    bad = BadVideoLog(tmp_path / "bad", 4, 0.5)
    ds = PretrainDataset(
        index_of(numbered), IntervalPairSampler((V1, V2)), DecodeConfig(timeout=2.0), bad, seed=1
    )
    start = time.monotonic()
    sample = ds[(0, 1)]
    assert time.monotonic() - start < 10
    assert sample["index"] != 1 and bad.count() == 1
    record = bad.summary()[0]
    assert record["path"] == str(hung) and "timed out after 2 s" in record["reason"]
    release.set()


# --- repeated augmentation -----------------------------------------------------------------


def test_repeats_decode_once_and_differ(
    numbered: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Path] = []
    real_open = dataset_mod.open_video
    monkeypatch.setattr(
        dataset_mod, "open_video", lambda p, **kw: (opened.append(Path(p)), real_open(p, **kw))[1]
    )
    bad = BadVideoLog(tmp_path / "bad", 4, 0.5)
    ds = PretrainDataset(
        index_of(numbered),
        RandomClipSampler((V1, V2)),
        DecodeConfig(short_side=40, repeats=3),
        bad,
        seed=2,
    )
    item = ds[(0, 2)]
    assert isinstance(item, list) and len(item) == 3 and opened == [numbered[2]]
    starts = {frame_numbers(s["views"]["clip1"])[0] for s in item}
    assert len(starts) > 1  # each repeat has its own clip position
    seeds = [s["seeds"]["clip1"] for s in item]
    assert len(set(seeds)) == 3 and all(s["index"] == 2 for s in item)
    batch = collate_samples([ds[(0, 0)], item])
    assert batch["views"]["clip1"].shape == (6, 3, 4, 40, 40)
    assert batch["index"].tolist() == [0, 0, 0, 2, 2, 2]


def test_datamodule_batches_count_samples(numbered: list[Path], tmp_path: Path) -> None:
    bad = BadVideoLog(tmp_path / "bad", 4, 0.5)
    ds = PretrainDataset(
        index_of(numbered), RandomClipSampler((V1,)), DecodeConfig(short_side=40, repeats=2), bad
    )
    loader = PretrainDataModule(ds, batch_size=4, num_workers=0, seed=0).train_dataloader()
    batches = list(loader)
    assert len(batches) == 2  # 4 videos, 2 per batch, 2 samples each
    assert all(b["views"]["clip1"].shape[0] == 4 for b in batches)
    with pytest.raises(ValueError, match="not a multiple of data.repeats"):
        PretrainDataModule(ds, batch_size=3, num_workers=0, seed=0).train_dataloader()


# --- sampling by time and by rate ----------------------------------------------------------


def test_frame_times_match_container_on_both_backends(tmp_path: Path) -> None:
    pts = [0, 40, 80, 100, 300, 320, 340, 360, 380, 400]  # a stall between 100 and 300 ms
    path = tmp_path / "vfr.mp4"
    write_numbered(path, pts)
    for backend in ("decord", "pyav"):
        with open_video(path, backend=backend) as reader:
            assert reader.num_frames == len(pts)
            np.testing.assert_allclose(reader.frame_times(), np.array(pts) / 1000, atol=1e-3)


def test_sample_by_time_is_even_in_time_on_a_variable_rate_video(tmp_path: Path) -> None:
    # 10 fps for 1 s, then 50 fps for 1 s: 10 + 50 frames over 2 s of video.
    pts = [100 * k for k in range(10)] + [1000 + 20 * k for k in range(50)]
    path = tmp_path / "vfr.mp4"
    write_numbered(path, pts)
    every = {"all": np.arange(0, 200)}  # the whole nominal grid

    def choose(n: int, fps: float | None) -> dict[str, np.ndarray]:
        return {"all": every["all"][:n]}

    for backend in ("decord", "pyav"):
        by_time = read_views(path, choose, DecodeConfig(backend, 40, sample_by="time"))["all"]
        frames = frame_numbers(by_time)
        with open_video(path, backend=backend) as reader:
            fps, times = reader.fps, reader.frame_times()
        grid = np.arange(len(frames)) / fps  # the time each sample stands for
        shown = times[frames] - times[0]  # when the chosen frame appears
        nxt = np.append(times[1:], np.inf)[frames] - times[0]
        assert np.all(shown <= grid + 0.5 / fps + 1e-6) and np.all(grid < nxt + 1e-6)
        assert abs(grid[-1] - (times[-1] - times[0])) <= 1 / fps  # the grid covers the video
        # By index, the first second (10 frames) would get a sixth of the samples; by time half.
        assert sum(f < 10 for f in frames) == pytest.approx(len(frames) / 2, abs=2)


def test_view_frame_rate_sets_the_step(tmp_path: Path) -> None:
    view = TemporalView("slow", frames=4, stride=1, fps=10.0)
    assert view.offsets(30.0).tolist() == [0, 3, 6, 9]  # every 3rd frame of a 30 fps video
    assert view.offsets(25.0).tolist() == [0, 3, 5, 8]  # 0.1 s steps at 25 fps, nearest frame
    assert view.offsets(None).tolist() == [0, 1, 2, 3]  # unknown rate: the stride
    path = tmp_path / "v.mp4"
    write_numbered(path, [round(k * 1000 / 30) for k in range(30)])
    sampler = RandomClipSampler((view,))
    clips = read_views(
        path, lambda n, fps: sampler(n, np.random.default_rng(0), fps), DecodeConfig("pyav", 40)
    )
    got = frame_numbers(clips["slow"])
    assert np.diff(got).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="fps must be > 0"):
        TemporalView("x", 4, 1, fps=0.0)


def test_repeats_loader_deterministic_across_workers(numbered: list[Path], tmp_path: Path) -> None:
    bad = BadVideoLog(tmp_path / "bad", 4, 0.5)
    ds = PretrainDataset(
        index_of(numbered),
        IntervalPairSampler((V1, V2)),
        DecodeConfig(short_side=40, repeats=2),
        bad,
    )

    def run(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(
            ds,
            batch_size=2,
            sampler=EpochSampler(4, seed=3),
            num_workers=workers,
            collate_fn=collate_samples,
        )
        return [b["views"]["clip2"] for b in loader]

    assert all(torch.equal(a, b) for a, b in zip(run(0), run(2), strict=True))


def test_frame_folder_reads_through_the_dataset(shared_data: Path, tmp_path: Path) -> None:
    """A frame folder (mmaction2 rawframes) is a video to the dataset: sampled by time at the
    configured rate, decoded once, cropped like any file."""
    folder = tmp_path / "clip"
    folder.mkdir()
    for jpg in sorted((shared_data / "mmaction2" / "imgs").glob("img_*.jpg")):
        (folder / jpg.name).write_bytes(jpg.read_bytes())
    view = TemporalView("slow", frames=3, stride=1, fps=5.0)  # every 2nd frame at 10 fps
    seen: dict[str, float | None] = {}

    def choose(n: int, fps: float | None) -> dict[str, np.ndarray]:
        seen["n"], seen["fps"] = n, fps
        return {"slow": np.array([0, 2, 4])}

    decode = DecodeConfig(short_side=48, sample_by="time", frame_fps=10.0)
    clips = read_views(folder, choose, decode)
    assert seen == {"n": 10, "fps": 10.0}
    assert clips["slow"].shape[0] == 3 and min(clips["slow"].shape[1:3]) == 48
    with open_video(folder, short_side=48) as reader:
        assert torch.equal(clips["slow"], reader.get_frames([0, 2, 4]))
    assert view.offsets(10.0).tolist() == [0, 2, 4]


def test_dataset_lets_a_frame_reading_sampler_choose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MCL's motion-focused sampler sees frames through the dataset (one open, one read)."""
    from ssvrl.data.motion_sampling import MotionFocusedSampler
    from ssvrl.data.multiview_sampling import ViewTiming

    # 60 frames: still for 0-29 (frame number constant), changing every frame for 30-59.
    path = tmp_path / "half_moving.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "bf": "0"}
        for k in range(60):
            img = np.zeros((64, 64, 3), dtype=np.uint8)
            if k >= 30:
                img[:, (k % 8) * 8 : (k % 8) * 8 + 8] = 255  # a bar sweeping across
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    opened: list[Path] = []
    real_open = dataset_mod.open_video
    monkeypatch.setattr(
        dataset_mod, "open_video", lambda p, **kw: (opened.append(Path(p)), real_open(p, **kw))[1]
    )
    index = index_of([path])
    timing = ViewTiming("clip", frames=8, stride=1)
    moving = {}
    for p in (1.0, 0.0):
        sampler = MotionFocusedSampler((timing,), candidates=6, p=p, low_res=16)
        bad = BadVideoLog(tmp_path / f"bad{p}", 1, 0.5)
        ds = PretrainDataset(index, sampler, DecodeConfig(short_side=40), bad, seed=0)
        clips = [ds[(e, 0)]["views"]["clip"].float() for e in range(24)]  # (3, T, S, S) each
        moving[p] = sum(int((c[:, 1:] - c[:, :-1]).abs().mean() > 1.0) for c in clips)
    assert len(opened) == 48  # one open per sample
    assert moving[1.0] >= 22 and moving[1.0] > moving[0.0] + 4, moving


def test_stored_flow_becomes_the_views_motion_map(shared_data: Path, tmp_path: Path) -> None:
    """data.motion_source=flow: the loader reads each view's denseflow JPEGs as a magnitude map
    cropped exactly like the view, and the device-side builder uses it instead of frame
    differences; a plain video file (no flow) is then a bad video."""
    from ssvrl.augment.multiview import MotionUse, MultiViewAugment
    from ssvrl.objectives.base import ViewSpec

    folder = tmp_path / "clip"
    folder.mkdir()
    for jpg in sorted((shared_data / "mmaction2" / "imgs").glob("*.jpg")):
        (folder / jpg.name).write_bytes(jpg.read_bytes())  # 10 frames, 5 flow fields, 320x240
    view = TemporalView("clip", frames=4, stride=1)
    bad = BadVideoLog(tmp_path / "bad", 2, 1.0)
    decode = DecodeConfig(short_side=48, flow=True)
    ds = PretrainDataset(index_of([folder]), RandomClipSampler((view,)), decode, bad, seed=3)
    sample = ds[(0, 0)]
    clip, motion = sample["views"]["clip"], sample["motion"]["clip"]
    assert clip.shape == (3, 4, 48, 48) and motion.shape == (1, 4, 48, 48)
    # The same crop: recompute from the reader with the offset the clip was cut at.
    with open_video(folder, short_side=48) as reader:
        frames = reader.get_frames(range(10))  # (10, 48, 64, 3)
        flow = reader.get_flow(range(5))  # (5, 2, 48, 64)
    x0 = next(
        x
        for x in range(17)
        if any(torch.equal(clip[:, 0], f[:, x : x + 48].permute(2, 0, 1)) for f in frames)
    )
    start = next(
        i for i in range(10) if torch.equal(clip[:, 0], frames[i][:, x0 : x0 + 48].permute(2, 0, 1))
    )
    expected = flow.square().sum(1).sqrt()[np.minimum(np.arange(start, start + 4), 4)]
    torch.testing.assert_close(motion[0], expected[:, :, x0 : x0 + 48])
    # Through the builder: the stored map replaces frame differences for a frame_diff view.
    batch = collate_samples([sample])
    spec = ViewSpec("clip", 4, 1, motion=MotionUse(kind="frame_diff"))
    aug = MultiViewAugment([spec])
    with_flow = aug(batch["views"], batch["seeds"], batch["motion"])["clip/motion"]
    without = aug(batch["views"], batch["seeds"])["clip/motion"]
    assert with_flow.shape == without.shape and not torch.allclose(with_flow, without)
    assert with_flow.max() > 1.0  # pixels of flow, not luma differences in [0, 1]
    # A video file has no stored flow: unreadable under motion_source=flow.
    video = tmp_path / "v.mp4"
    write_numbered(video, [round(k * 1000 / 30) for k in range(30)])
    ds = PretrainDataset(index_of([video, folder]), RandomClipSampler((view,)), decode, bad)
    assert ds[(0, 0)]["index"] == 1 and "stored optical flow" in bad.summary()[0]["reason"]
