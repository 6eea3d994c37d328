"""Evaluation across 2 gloo processes on CPU: disjoint shards, every video counted once.

Each process runs in its own subprocess with a hard timeout (``tests/dist_utils.py``); the same
worker function run without a process group is the 1-process reference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ssvrl.augment import AugmentConfig, VideoAugment
from ssvrl.eval.distributed import extract_sharded, gather_rows, shard_indices
from ssvrl.eval.linear_online import train_online
from ssvrl.eval.linear_probe import LinearHead
from ssvrl.eval.protocol import LinearSettings, evaluate_cached
from tests.dist_utils import run_distributed

NUM_VIDEOS = 5  # odd: a padding sampler would count one video twice


class _Videos(Dataset):
    """``size`` fake videos of 2 clips; video 3 is unreadable (valid False)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(idx)
        clips = torch.randint(0, 256, (2, 3, 4, 20, 20), dtype=torch.uint8, generator=g)
        return {"clips": clips, "label": idx % 3, "valid": idx != 3, "index": idx}


def _online_batches(rank: int, world: int) -> list[dict[str, Any]]:
    """Rank ``rank``'s part of two global batches of 4 clips (all of them when world == 1)."""
    g = torch.Generator().manual_seed(7)
    clips = torch.randint(0, 256, (2, 4, 3, 4, 20, 20), dtype=torch.uint8, generator=g)
    seeds = torch.arange(8).reshape(2, 4)
    per = 4 // world
    part = slice(rank * per, (rank + 1) * per)
    return [{"views": {"v": clips[s, part]}, "seeds": {"v": seeds[s, part]},
             "label": (seeds[s, part] % 3)} for s in range(2)]


class _Encoder(nn.Sequential):
    """A tiny conv + batch-norm encoder, (B, 3, T, H, W) -> (B, 8) (no timm import: the
    subprocesses start faster)."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__(nn.Conv3d(3, 8, 3, stride=2), nn.BatchNorm3d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten())


def _worker(rank: int, world: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = _Encoder().eval()
    aug = VideoAugment(AugmentConfig(crop_size=16))
    kw = {"clips_per_video": 2, "dim": model.num_features, "batch_size": 2, "num_workers": 0,
          "transform": aug.eval_transform, "device": torch.device("cpu")}
    fs = extract_sharded(model, _Videos(NUM_VIDEOS), augment=aug, copies=1, seed=3, **kw)
    lonely = extract_sharded(model, _Videos(1), **kw)  # rank 1 has no video at all
    metrics = evaluate_cached(fs, fs, 3, ("linear", "knn", "retrieval"), LinearSettings(steps=5))
    head = train_online(model, LinearHead(model.num_features, 3), lambda e: _online_batches(
        rank, world), aug, view="v", epochs=2, steps_per_epoch=2, lr=0.1, weight_decay=1e-4,
        device=torch.device("cpu"))
    uneven = gather_rows(torch.full((rank + 1, 2), float(rank)))
    assert fs.augmented is not None
    return {
        "shard": shard_indices(NUM_VIDEOS, rank, world),
        "index": fs.index.tolist(),
        "labels": fs.labels.tolist(),
        "valid": fs.valid.tolist(),
        "feats": fs.feats.tolist(),
        "augmented": fs.augmented.tolist(),
        "lonely": (lonely.index.tolist(), list(lonely.feats.shape)),
        "metrics": metrics,
        "head": head.fc.weight.tolist(),
        "uneven": uneven.tolist(),
    }


def test_two_processes_count_every_video_once_and_match_one_process() -> None:
    ranks = run_distributed(_worker, 2, timeout=240)
    ref = _worker(0, 1)
    assert [r["shard"] for r in ranks] == [[0, 2, 4], [1, 3]]  # disjoint, no padding
    assert ranks[0]["uneven"] == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    for r in ranks:
        assert r["index"] == list(range(NUM_VIDEOS)) == ref["index"]
        assert r["labels"] == ref["labels"] and r["valid"] == [True, True, True, False, True]
        assert torch.allclose(torch.tensor(r["feats"]), torch.tensor(ref["feats"]), atol=1e-5)
        assert torch.allclose(torch.tensor(r["augmented"]), torch.tensor(ref["augmented"]),
                              atol=1e-5)
        assert r["lonely"] == ([0], [1, 2, 8])
        for name, values in ref["metrics"].items():
            for key, v in values.items():
                assert abs(r["metrics"][name][key] - v) < 1e-3, (name, key)
        # the online head took the same steps on the gathered global batch
        assert torch.allclose(torch.tensor(r["head"]), torch.tensor(ref["head"]), atol=1e-5)
    assert ranks[0]["head"] == ranks[1]["head"]
