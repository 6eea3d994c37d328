"""The test protocol (clips x crops), per-video aggregation, augmented caching, online probing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from ssvrl.augment import AugmentConfig, VideoAugment
from ssvrl.backbones import build_backbone
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.dataset import DecodeConfig, read_views
from ssvrl.data.eval_dataset import EvalClipDataset, crop_offsets
from ssvrl.data.index import build_index
from ssvrl.data.sampling import TemporalView, clip_indices, uniform_starts
from ssvrl.eval.features import FeatureSet, extract_features
from ssvrl.eval.linear_online import train_online
from ssvrl.eval.linear_probe import LinearHead
from ssvrl.eval.protocol import LinearSettings, evaluate_cached, linear_examples, video_scores


def test_crop_offsets_spread_along_the_long_side() -> None:
    assert crop_offsets(4, 10, 3) == [(0, 0), (0, 3), (0, 6)]  # landscape: left, centre, right
    assert crop_offsets(11, 5, 3) == [(0, 0), (3, 0), (6, 0)]  # portrait: top, centre, bottom
    assert crop_offsets(4, 10, 1) == [(0, 3)]
    assert crop_offsets(6, 6, 3) == [(0, 0)] * 3
    with pytest.raises(ValueError, match="1 or 3"):
        crop_offsets(4, 10, 2)


def test_eval_dataset_clips_times_crops_in_clip_major_order(
    shared_data: Path, tmp_path: Path
) -> None:
    root = tmp_path / "videos" / "a"
    root.mkdir(parents=True)
    shutil.copy(shared_data / "mmaction2" / "test.mp4", root / "v.mp4")
    lst = tmp_path / "list.csv"
    lst.write_text("a/v.mp4,0\n")
    index = build_index("csv", tmp_path / "videos", "test", train_list=lst, test_list=lst)
    view, decode = TemporalView("probe", 4, 3), DecodeConfig(short_side=48)
    bad = BadVideoLog(tmp_path / "bad", 1, 0.5)
    three = EvalClipDataset(index, view, 2, decode, bad, num_crops=3)[0]["clips"]
    one = EvalClipDataset(index, view, 2, decode, bad)[0]["clips"]  # the old positional call
    assert three.shape == (6, 3, 4, 48, 48) and one.shape == (2, 3, 4, 48, 48)

    def choose(n: int, fps: float | None) -> dict:
        starts = uniform_starts(n, view.span_at(fps), 2)
        return {str(k): clip_indices(s, view, n, fps) for k, s in enumerate(starts)}

    frames = read_views(index.records[0].path, choose, decode)  # {clip: (T, H, W, 3)}
    H, W = frames["0"].shape[1:3]
    assert W > H == 48  # a landscape video: the three crops differ
    for k in range(6):
        clip, crop = divmod(k, 3)
        y, x = crop_offsets(H, W, 3)[crop]
        ref = frames[str(clip)][:, y : y + 48, x : x + 48].permute(3, 0, 1, 2)  # (3, T, S, S)
        assert torch.equal(three[k], ref), k
    assert torch.equal(three[1], one[0]) and torch.equal(three[4], one[1])  # centre crops


def _fs(feats: torch.Tensor, labels: list[int], aug: torch.Tensor | None = None) -> FeatureSet:
    n = feats.shape[0]
    return FeatureSet(feats, torch.tensor(labels), torch.ones(n, dtype=torch.bool),
                      torch.arange(n), aug)


def test_linear_examples_include_augmented_copies() -> None:
    feats = torch.arange(2 * 2 * 1, dtype=torch.float32).reshape(2, 2, 1)  # (N=2, K=2, D=1)
    aug = 100 + torch.arange(2 * 3 * 2 * 1, dtype=torch.float32).reshape(2, 3, 2, 1)  # R=3
    x, y = linear_examples(_fs(feats, [4, 7], aug))
    assert x.squeeze(1).tolist() == [0, 1, 2, 3, *range(100, 112)]
    assert y.tolist() == [4, 4, 7, 7] + [4] * 6 + [7] * 6


def test_video_scores_average_clip_softmax() -> None:
    head = LinearHead(2, 2, "none")
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(2))
    feats = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # one video, two clips
    p1, p2 = torch.tensor([2.0, 0.0]).softmax(0), torch.tensor([0.0, 1.0]).softmax(0)
    assert torch.allclose(video_scores(head, _fs(feats, [0])), ((p1 + p2) / 2)[None])


def test_evaluate_cached_excludes_unreadable_videos() -> None:
    g = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(3, 8, generator=g)
    ytr, yte = torch.arange(30) % 3, torch.arange(12) % 3
    train = _fs(centres[ytr][:, None] + 0.3 * torch.randn(30, 2, 8, generator=g), ytr.tolist())
    test = _fs(centres[yte][:, None] + 0.3 * torch.randn(12, 3, 8, generator=g), yte.tolist())
    test.labels[0], test.valid[0] = 2, False  # a wrong label on an unreadable video: ignored
    out = evaluate_cached(train, test, 3, ("linear", "knn", "retrieval"), LinearSettings(steps=30),
                          knn_k=5)
    assert out["linear"]["top1"] == out["knn"]["top1"] == out["retrieval"]["R@1"] == 100.0


class _ColourNet(nn.Module):
    """A stand-in encoder with batch norm: per-channel means of a BN'd clip, (B, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(3)
        self.num_features = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x).mean(dim=(2, 3, 4))  # (B, 3)


def _colour_batches(epoch: int) -> list[dict]:
    """Clips whose class is their brightest channel, at random brightness (seeded per epoch)."""
    g = torch.Generator().manual_seed(epoch)
    out = []
    for _ in range(3):
        y = torch.randint(0, 3, (8,), generator=g)
        clips = torch.randint(0, 60, (8, 3, 2, 12, 12), generator=g, dtype=torch.uint8)
        clips[torch.arange(8), y] += 150
        seeds = torch.randint(0, 2**62, (8,), generator=g)
        out.append({"views": {"probe": clips}, "seeds": {"probe": seeds}, "label": y})
    return out


def test_online_probe_learns_and_leaves_the_backbone_untouched() -> None:
    torch.manual_seed(0)
    net = _ColourNet().train()
    with torch.no_grad():  # non-default statistics, so a reset would show too
        net.bn.running_mean.fill_(0.4)
        net.bn.running_var.fill_(0.05)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    aug = VideoAugment(AugmentConfig(crop_size=8, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0))
    head = train_online(net, LinearHead(3, 3, "bn"), _colour_batches, aug, view="probe",
                        epochs=8, steps_per_epoch=3, lr=0.5, weight_decay=0.0,
                        device=torch.device("cpu"))
    assert net.training and not head.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BN running stats, bitwise
    test = _colour_batches(99)[0]
    with torch.no_grad():
        net.eval()
        pred = head(net(aug.eval_transform(test["views"]["probe"]))).argmax(dim=1)
    assert (pred == test["label"]).float().mean() == 1.0


def test_augmented_cache_is_frozen_and_independent_of_batching() -> None:
    model = build_backbone("small3d", width=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    aug = VideoAugment(AugmentConfig(crop_size=16))
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (3, 2, 3, 4, 20, 20), dtype=torch.uint8, generator=g)

    def batches(size: int) -> list[dict]:
        return [{"clips": clips[i : i + size], "label": torch.zeros(len(clips[i : i + size])),
                 "valid": torch.ones(len(clips[i : i + size]), dtype=torch.bool),
                 "index": torch.arange(i, min(i + size, 3))} for i in range(0, 3, size)]

    kw = {"augment": aug, "copies": 2, "seed": 5}
    a = extract_features(model, batches(3), aug.eval_transform, torch.device("cpu"), **kw)
    b = extract_features(model, batches(1), aug.eval_transform, torch.device("cpu"), **kw)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert a.augmented is not None and b.augmented is not None
    assert a.augmented.shape == (3, 2, 2, model.num_features)
    assert torch.allclose(a.augmented, b.augmented, atol=1e-5)
    assert not torch.allclose(a.augmented[:, 0], a.augmented[:, 1])  # copies differ
    assert not torch.allclose(a.augmented[:, 0], a.feats)  # and differ from the clean clips
