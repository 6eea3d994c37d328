"""The online probe: no effect on the backbone's gradients, clipping or BN statistics; the
objectives' features are the anchors' backbone output; the fallback forward for objectives
without features; known-answer accuracy and DDP-safe counts; a tiny fit logs both metrics."""

from __future__ import annotations

import copy
import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from ssvrl.backbones import build_backbone, load_weights
from ssvrl.config.schema import OptimConfig
from ssvrl.data.datamodule import ShardSampler
from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset
from ssvrl.engine.module import PretrainModule
from ssvrl.engine.online_probe import OnlineProbe, anchor_view
from ssvrl.objectives import OBJECTIVES, ObjectiveOutput
from ssvrl.objectives.cvrl import CVRL
from tests.test_objectives import _batch, _build, _run

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = [n for n in OBJECTIVES.names() if OBJECTIVES.get(n).__module__.startswith("ssvrl.")]
pytestmark = pytest.mark.filterwarnings("ignore:.*self.log.*")  # modules without a Trainer


class NoFeatures(CVRL):
    """CVRL as an out-of-tree objective that does not fill ``ObjectiveOutput.features``."""

    def forward(  # type: ignore[override]
        self, encoder: nn.Module, views: dict[str, torch.Tensor], video_ids: Any = None
    ) -> ObjectiveOutput:
        return replace(super().forward(encoder, views, video_ids), features=None)


def _modules(no_features: bool = False) -> tuple[PretrainModule, PretrainModule]:
    """The same backbone and objective without and with an online probe (3 classes)."""
    encoder, objective = _build("cvrl")
    if no_features:
        objective = NoFeatures(objective.cfg, encoder.num_features)
    plain = PretrainModule(encoder, objective, OptimConfig(), 4)
    probe = OnlineProbe(encoder.num_features, 3, anchor_view(objective), 1e-2, 0.0)
    enc2, obj2 = copy.deepcopy(encoder), copy.deepcopy(objective)
    return plain, PretrainModule(enc2, obj2, OptimConfig(), 4, online_probe=probe)


def _train_batch(module: PretrainModule) -> dict[str, Any]:
    views = _batch(module.objective, B=4)
    return {"views": views, "label": torch.tensor([0, 1, 2, 1]), "index": torch.arange(4)}


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("no_features", [False, True], ids=["features", "fallback"])
def test_backbone_gradients_and_state_identical_with_probe(no_features: bool) -> None:
    plain, probed = _modules(no_features)
    for module in (plain, probed):
        module.training_step(_train_batch(module), 0).backward()
    for part in ("backbone", "objective"):
        a, b = _grads(getattr(plain, part)), _grads(getattr(probed, part))
        assert a.keys() == b.keys() and a
        assert all(torch.equal(a[k], b[k]) for k in a), part
    # The fallback's extra forward runs in eval mode: BN running statistics as without it.
    sa, sb = plain.backbone.state_dict(), probed.backbone.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert probed.backbone.training
    assert probed.online_probe is not None and probed.online_probe.head.weight.grad is not None


def test_gradient_clipping_ignores_the_probe_head() -> None:
    plain, probed = _modules()
    for module in (plain, probed):
        module.training_step(_train_batch(module), 0).backward()
        module.trainer = pl.Trainer(accelerator="cpu", logger=False, gradient_clip_val=1e-3)
        params = [*module.backbone.parameters(), *module.objective.parameters()]
        groups = [{"params": params}]
        if module.online_probe is not None:
            groups.append(module.online_probe.param_group())
        module.configure_gradient_clipping(torch.optim.SGD(groups, lr=0.1), 1e-3, "norm")
    assert probed.online_probe is not None
    head_grad = probed.online_probe.head.weight.grad
    assert head_grad is not None and head_grad.norm() > 1e-3  # held aside, not clipped
    a, b = _grads(plain.backbone), _grads(probed.backbone)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.cat([g.flatten() for g in a.values()]).norm() < 1.01e-3  # clipped


@pytest.mark.parametrize("name", BUILT_IN)
def test_objective_features_are_the_anchor_backbone_output(name: str) -> None:
    """In eval mode (BN per sample) the features equal encoder(anchor view) row by row."""
    encoder, objective = _build(name)
    views = _batch(objective, B=3)
    encoder.eval(), objective.eval()
    with torch.no_grad():
        out = _run(objective, encoder, views)
        expected = encoder(views[anchor_view(objective).name])  # (B, D)
    assert out.features is not None and out.features.shape == (3, encoder.num_features)
    assert torch.allclose(out.features, expected, atol=1e-5)


def _stub_backbone() -> nn.Module:
    """(N, C, T, H, W) -> (N, 3): batch norm, then the mean of each channel."""
    return nn.Sequential(nn.BatchNorm3d(3), nn.AdaptiveAvgPool3d(1), nn.Flatten())


def _video_batch(labels: list[int], valid: list[bool]) -> dict[str, torch.Tensor]:
    """uint8 (B, K=2, 3, T, H, W) clips whose brightness encodes the label (0 dark, 1 bright)."""
    level = torch.tensor([40.0 + 160.0 * y for y in labels]).view(-1, 1, 1, 1, 1, 1)
    clips = (level + 10 * torch.rand(len(labels), 2, 3, 4, 40, 40)).to(torch.uint8)
    return {"clips": clips, "label": torch.tensor(labels), "valid": torch.tensor(valid)}


def test_head_learns_separable_features_and_counts_only_valid_videos() -> None:
    torch.manual_seed(0)
    anchor = anchor_view(_build("cvrl")[1])  # crop 32
    probe = OnlineProbe(3, 2, anchor, lr=0.1, weight_decay=0.0)
    backbone = _stub_backbone().train()
    opt = torch.optim.SGD([probe.param_group()])
    labels = torch.arange(64) % 2
    feats = torch.stack([labels * 2.0 - 1.0] * 3, dim=1) + 0.1 * torch.randn(64, 3)  # (64, 3)
    for _ in range(100):
        opt.zero_grad()
        loss, top1 = probe.train_terms(feats, labels)
        loss.backward()
        opt.step()
    assert top1.item() == 100.0
    # Validation through a BN backbone: in eval mode its fresh running stats (0, 1) leave the
    # normalised clips as they are, dark < 0 < bright, so bright clips must come out class 1.
    before = copy.deepcopy(backbone.state_dict())
    probe.reset_counts()
    probe.eval_batch(backbone, _video_batch([0, 1, 1, 0], [True, True, True, True]))
    probe.eval_batch(backbone, _video_batch([1, 0, 1], [True, True, False]))  # one unreadable
    assert probe.result(lambda t: t) == (100.0, 6)
    assert backbone.training
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())


def test_val_pass_leaves_small3d_bn_statistics_and_mode() -> None:
    encoder, objective = _build("cvrl")
    probe = OnlineProbe(encoder.num_features, 3, anchor_view(objective), 1e-2, 0.0)
    encoder.train()
    before = copy.deepcopy(encoder.state_dict())
    probe.eval_batch(encoder, _video_batch([0, 1, 2], [True] * 3))
    assert encoder.training and all(m.training for m in encoder.modules())
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k  # running_mean / var / num_batches_tracked too


def test_shards_cover_each_video_once_and_counts_sum_across_ranks() -> None:
    shards = [list(ShardSampler(10, 3, r)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 3, 3]
    assert sorted(i for s in shards for i in s) == list(range(10))  # no padding, no repeats
    # Two "ranks" with their own counts: the summed result is the one-process result.
    anchor = anchor_view(_build("cvrl")[1])
    probes = [OnlineProbe(3, 2, anchor, 0.1, 0.0) for _ in range(3)]
    for p in probes[1:]:
        p.load_state_dict(probes[0].state_dict())
    backbone = _stub_backbone()
    labels, valid = [0, 1, 1, 0, 1], [True, True, False, True, True]
    batch = _video_batch(labels, valid)
    probes[0].eval_batch(backbone, batch)
    for rank, p in enumerate(probes[1:]):
        rows = list(ShardSampler(5, 2, rank))
        p.eval_batch(backbone, {k: v[rows] for k, v in batch.items()})
    ranks = probes[1:]

    def all_sum(t: torch.Tensor) -> torch.Tensor:
        return sum((p._counts for p in ranks), torch.zeros(2, dtype=torch.long))

    assert ranks[0].result(all_sum) == probes[0].result(lambda t: t)
    assert probes[0].result(lambda t: t)[1] == 4  # the unreadable video counted nowhere


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    spec = SynthSpec(num_classes=6, groups=4, clips_per_group=2, frames=40, seed=1)
    write_synthetic_dataset(out, spec, workers=2)
    return out


def test_fit_logs_online_metrics_each_epoch_and_checkpoint_loads(
    tiny_data: Path, tmp_path: Path
) -> None:
    from ssvrl.cli import main

    args = [
        f"data.root={tiny_data / 'videos'}",
        f"data.annotations={tiny_data / 'annotations'}",
        f"out_dir={tmp_path}",
        "name=op",
        "trainer.max_epochs=2",
        "data.batch_size=8",
        "data.num_workers=0",
        "backbone.width=8",
        "objective.proj_hidden=32",
        "trainer.progress_bar=false",
        "online_probe.enabled=true",
        "online_probe.val_clips=2",
    ]
    assert main(["fit", str(ROOT / "experiments" / "cvrl" / "quickstart.yaml"), *args]) == 0
    run = tmp_path / "op" / "version_0"
    rows = list(csv.DictReader((run / "metrics.csv").open()))

    def per_epoch(key: str) -> dict[int, float]:
        return {int(r["epoch"]): float(r[key]) for r in rows if r.get(key)}

    test_videos = len((tiny_data / "annotations" / "testlist01.txt").read_text().split())
    for key in ("train/online_top1", "val/online_top1", "train/online_loss"):
        values = per_epoch(key)
        assert sorted(values) == [0, 1], key
        assert all(0.0 <= v <= 100.0 for v in values.values()) or key.endswith("loss")
    assert set(per_epoch("val/online_videos").values()) == {float(test_videos)}
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    num_features = build_backbone("small3d", width=8).num_features
    assert state["online_probe.head.weight"].shape == (6, num_features)
    load_weights(build_backbone("small3d", width=8), ckpt)  # backbone keys only: loads
