"""Sampled clip indices and augmentation parameters of a (seed, epoch, video) do not depend on
the number of processes or DataLoader workers (ARCHITECTURE.md, contract 5).

Through the real objects: ``PretrainDataModule.train_dataloader`` (its ``EpochSampler`` sharded
for world 1 and for both ranks of world 2, with 0 and 2 workers) over a ``PretrainDataset`` of
real synthetic videos with CVRL's sampler. The only addition is a recorder around the clip
sampler that returns the frame indices it drew with each sample, so the indices themselves
(not only the decoded pixels) are compared. Augmentation parameters come from the per-view
seeds through ``sample_params``, as the device-side augmentation draws them.
"""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from ssvrl.augment import AugmentConfig, MultiViewAugment
from ssvrl.augment.params import sample_params
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.datamodule import PretrainDataModule
from ssvrl.data.dataset import DecodeConfig, PretrainDataset
from ssvrl.data.index import build_index
from ssvrl.data.sampling import ClipSampler, IntervalPairSampler, TemporalView
from ssvrl.objectives import ViewSpec

EPOCH = 1
VIEWS = (TemporalView("clip1", 4, 2), TemporalView("clip2", 4, 2))
RECIPE = AugmentConfig(crop_size=32, blur_p=0.5, solarize_p=0.2)
AUGMENT = MultiViewAugment([ViewSpec(v.name, v.frames, v.stride, RECIPE) for v in VIEWS])


class RecordingSampler:
    """The real clip sampler; remembers the indices of its latest draw (one per process)."""

    def __init__(self, inner: ClipSampler) -> None:
        self.inner = inner
        self.last: dict[str, np.ndarray] = {}

    def __call__(self, num_frames: int, rng: np.random.Generator, fps: float | None = None
                 ) -> dict[str, np.ndarray]:  # fmt: skip
        self.last = self.inner(num_frames, rng, fps)
        return self.last


class RecordingDataset(PretrainDataset):
    def __getitem__(self, key: Any) -> Any:
        sample = super().__getitem__(key)
        assert isinstance(self.sampler, RecordingSampler)
        sample["frames"] = {k: torch.as_tensor(v) for k, v in self.sampler.last.items()}
        return sample


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> RecordingDataset:
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth_ranks")
    spec = SynthSpec(num_classes=2, groups=4, clips_per_group=2, frames=30, size=40, seed=9)
    write_synthetic_dataset(out, spec, workers=1)
    index = build_index("ucf101", out / "videos", "train", annotations=out / "annotations")
    sampler = RecordingSampler(IntervalPairSampler(VIEWS))
    bad = BadVideoLog(out / "bad", len(index), 0.5)
    return RecordingDataset(index, sampler, DecodeConfig(short_side=40), bad, seed=11)


def _collect(ds: RecordingDataset, world: int, rank: int, workers: int, epoch: int = EPOCH
             ) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Per video index: frame indices, seeds, augmentation params and augmented clips, drawn
    batch by batch as the engine does (batches differ between the configurations)."""
    dm = PretrainDataModule(ds, batch_size=2, num_workers=workers, seed=3)
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)  # type: ignore[assignment]
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]  (as Lightning does)
    out: dict[int, dict[str, Any]] = {}
    for batch in loader:
        augmented = AUGMENT(batch["views"], batch["seeds"])  # {view: float (B, C, T, S, S)}
        params = {v: sample_params(RECIPE, batch["seeds"][v], (40, 40)) for v in augmented}
        for b, idx in enumerate(batch["index"].tolist()):
            out[idx] = {
                "frames": {k: v[b].tolist() for k, v in batch["frames"].items()},
                "seeds": {k: int(v[b]) for k, v in batch["seeds"].items()},
                "params": {v: [getattr(p, f.name)[b] for f in fields(p)] 
                           for v, p in params.items()},
                "clips": {k: v[b] for k, v in augmented.items()},
            }
    return out


def _same(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> bool:
    for idx in a:
        x, y = a[idx], b[idx]
        if x["frames"] != y["frames"] or x["seeds"] != y["seeds"]:
            return False
        for view, fs in x["params"].items():
            if not all(torch.equal(p, q) for p, q in zip(fs, y["params"][view], strict=True)):
                return False
        if any(not torch.allclose(x["clips"][k], y["clips"][k], atol=1e-6) for k in x["clips"]):
            return False
    return set(a) == set(b)


def test_samples_do_not_depend_on_processes_or_workers(dataset: RecordingDataset) -> None:
    single = _collect(dataset, 1, 0, workers=0)
    assert len(single) == len(dataset)  # every video once (len divisible by 2 and 4)
    shards = [_collect(dataset, 2, r, workers=w) for r, w in ((0, 2), (1, 0))]
    assert not set(shards[0]) & set(shards[1])  # disjoint shards ...
    assert _same(single, {**shards[0], **shards[1]})  # ... that together are world 1's epoch
    assert _same(single, _collect(dataset, 1, 0, workers=2))
    # Known answer: the key holds the epoch; another epoch redraws every video's sample.
    other = _collect(dataset, 1, 0, workers=0, epoch=EPOCH + 1)
    assert all(other[i]["seeds"] != single[i]["seeds"] for i in single)
    assert any(other[i]["frames"] != single[i]["frames"] for i in single)
