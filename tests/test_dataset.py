"""PretrainDataset / EvalClipDataset on the real files in ../shared/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from ssvrl.data import dataset as dataset_mod
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.dataset import DecodeConfig, PretrainDataset
from ssvrl.data.epoch_sampler import EpochSampler
from ssvrl.data.eval_dataset import EvalClipDataset
from ssvrl.data.index import build_index
from ssvrl.data.sampling import IntervalPairSampler, TemporalView

V1, V2 = TemporalView("clip1", 16, 4), TemporalView("clip2", 16, 4)  # span 61 > 32 frames
FILES = ["test.mp4", "test.avi", "rawvideo_part_0.mp4", "demo.mp4"]


@pytest.fixture()
def real_index(shared_data: Path, tmp_path: Path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    for i, name in enumerate(FILES):
        shutil.copy(shared_data / "mmaction2" / name, root / "a" / f"{i}_{name}")
    lst = tmp_path / "train.csv"
    lst.write_text("".join(f"a/{i}_{n},{i % 2}\n" for i, n in enumerate(FILES)))
    return build_index("csv", root, "train", train_list=lst, test_list=lst)


def _dataset(index, tmp_path: Path, backend: str = "decord") -> PretrainDataset:
    return PretrainDataset(
        index,
        IntervalPairSampler((V1, V2)),
        DecodeConfig(backend=backend, short_side=64),
        BadVideoLog(tmp_path / "bad", len(index), 0.5),
        seed=5,
    )


def test_sample_shapes_and_short_video_loops(real_index, tmp_path: Path) -> None:
    ds = _dataset(real_index, tmp_path)
    for i in range(len(ds)):
        s = ds[(0, i)]
        assert set(s["views"]) == {"clip1", "clip2"}
        for clip in s["views"].values():
            assert clip.dtype == torch.uint8 and clip.shape == (3, 16, 64, 64)  # (C, T, S, S)
        assert s["seeds"]["clip1"] != s["seeds"]["clip2"]
    assert ds.bad.count() == 0  # rawvideo_part_0 (32 frames) looped, not rejected


def test_decodes_once_per_sample(
    real_index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_open = dataset_mod.open_video

    def counting_open(*args, **kwargs):
        reader = real_open(*args, **kwargs)
        original = reader.get_frames
        reader.get_frames = lambda idx: (calls.append(len(idx)), original(idx))[1]
        return reader

    monkeypatch.setattr(dataset_mod, "open_video", counting_open)
    _dataset(real_index, tmp_path)[(0, 0)]
    assert len(calls) == 1 and calls[0] <= 32  # one call for both clips, unique frames only


def test_deterministic_and_independent_of_workers(real_index, tmp_path: Path) -> None:
    ds = _dataset(real_index, tmp_path)
    a, b = ds[(3, 1)], ds[(3, 1)]
    assert torch.equal(a["views"]["clip1"], b["views"]["clip1"])
    assert a["seeds"] == b["seeds"]
    assert ds[(4, 1)]["seeds"] != a["seeds"]

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(
            ds, batch_size=2, sampler=EpochSampler(len(ds), seed=1), num_workers=workers
        )
        return [torch.cat([b["views"]["clip1"].flatten(), b["seeds"]["clip2"]]) for b in loader]

    assert all(torch.equal(x, y) for x, y in zip(batches(0), batches(2), strict=True))


def test_corrupt_file_is_skipped_and_recorded(real_index, tmp_path: Path) -> None:
    broken = real_index.records[0].path
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 4])  # truncated mid-stream
    ds = _dataset(real_index, tmp_path)
    s = ds[(0, 0)]
    assert s["index"] != 0 and s["views"]["clip1"].shape == (3, 16, 64, 64)
    assert ds.bad.count() == 1 and ds.bad.summary()[0]["path"] == str(broken)


def test_eval_dataset_clips_and_invalid(real_index, tmp_path: Path) -> None:
    bad = BadVideoLog(tmp_path / "bad", len(real_index), 0.5)
    ds = EvalClipDataset(
        real_index, TemporalView("probe", 8, 2), 3, DecodeConfig(short_side=48), bad
    )
    s = ds[0]
    assert s["valid"] and s["clips"].shape == (3, 3, 8, 48, 48)
    assert not torch.equal(s["clips"][0], s["clips"][2])  # different times
    real_index.records[1].path.unlink()  # vanished after indexing
    assert ds[1]["valid"] is False and bad.count() == 1


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_backends_give_same_clip(real_index, tmp_path: Path, backend: str) -> None:
    s = _dataset(real_index, tmp_path, backend)[(0, 0)]["views"]["clip1"].float()
    ref = _dataset(real_index, tmp_path, "decord")[(0, 0)]["views"]["clip1"].float()
    assert (s - ref).abs().mean() < 3.0
