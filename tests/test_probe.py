"""Linear probe pieces: frozen-backbone invariance, multi-clip features, classifier, top-k."""

from __future__ import annotations

import torch

from ssvrl.augment import AugmentConfig, VideoAugment
from ssvrl.backbones import build_backbone
from ssvrl.eval.features import extract_features
from ssvrl.eval.linear_probe import fit_linear_probe, topk_accuracy


def _batches(n: int = 3, B: int = 2, K: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"clips": torch.randint(0, 256, (B, K, 3, 4, 36, 36), dtype=torch.uint8, generator=g),
             "label": torch.arange(B), "valid": torch.ones(B, dtype=torch.bool),
             "index": torch.arange(B) + i * B} for i in range(n)]


def test_backbone_weights_and_bn_statistics_untouched() -> None:
    model = build_backbone("small3d", width=8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    aug = VideoAugment(AugmentConfig(crop_size=32))
    fs = extract_features(model, _batches(), aug.eval_transform, torch.device("cpu"))
    assert model.training  # the caller's mode is restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running_mean / running_var / num_batches_tracked too
    assert fs.feats.shape == (6, 2, model.num_features) and fs.labels.tolist() == [0, 1] * 3
    assert fs.index.tolist() == list(range(6))


def test_clip_features_are_per_clip() -> None:
    """Clip k of a video gets the features of that clip alone (averaging happens later)."""
    model = build_backbone("small3d", width=8)
    aug = VideoAugment(AugmentConfig(crop_size=32))
    batch = _batches(1)[0]
    fs = extract_features(model, [batch], aug.eval_transform, torch.device("cpu"))
    with torch.no_grad():
        model.eval()
        alone = model(aug.eval_transform(batch["clips"][1, 0:1]))  # video 1, clip 0
    assert torch.allclose(fs.feats[1, 0], alone[0], atol=1e-5)
    assert not torch.allclose(fs.feats[1, 0], fs.feats[1, 1])


def test_linear_probe_separates_separable_data() -> None:
    g = torch.Generator().manual_seed(0)
    centres = 5 * torch.randn(4, 16, generator=g)
    y = torch.arange(200) % 4
    x = centres[y] + torch.randn(200, 16, generator=g) + 100.0  # offset: standardisation matters
    probe = fit_linear_probe(x, y, 4, steps=50)
    xt = centres[y] + torch.randn(200, 16, generator=g) + 100.0
    assert topk_accuracy(probe(xt), y)["top1"] > 95.0


def test_topk_accuracy_known_answer() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    y = torch.tensor([0, 2, 1, 1])
    acc = topk_accuracy(logits, y, ks=(1, 2, 5))
    assert acc == {"top1": 25.0, "top2": 75.0, "top5": 100.0}
