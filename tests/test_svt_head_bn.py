"""SVT's ``head_bn``: batch norm after each hidden layer of both DINO heads (DINO's
``use_bn_in_head``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from ssvrl.augment import AugmentConfig
from ssvrl.backbones import build_backbone
from ssvrl.engine.nonfinite import BufferSnapshot
from ssvrl.heads.dino import DINOHead
from ssvrl.objectives import ViewConfig
from ssvrl.objectives.svt import SVT, SVTConfig
from tests.test_svt import _views

ROOT = Path(__file__).resolve().parents[1]


def _svt(head_bn: bool) -> tuple[nn.Module, SVT]:
    """A small3d encoder and an SVT with 2 global (4 frames, 32 px) + 2 local views, K = 64."""
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=8)
    views = (
        ViewConfig("global", frames=4, count=2, augment=AugmentConfig(crop_size=32)),
        ViewConfig("local", frames=2, count=2, augment=AugmentConfig(crop_size=16)),
    )
    cfg = SVTConfig(views=views, out_dim=64, proj_hidden=32, bottleneck_dim=16, head_bn=head_bn)
    svt = SVT(cfg, encoder.num_features)
    for t in svt.teacher_modules():
        t.requires_grad_(False)
    return encoder, svt


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_head_has_batch_norm_after_each_hidden_linear_only_when_on(layers: int) -> None:
    on = DINOHead(12, 20, hidden_dim=16, bottleneck_dim=8, num_layers=layers, use_bn=True)
    kinds = [type(m) for m in on.mlp]
    hidden = [nn.Linear, nn.BatchNorm1d, nn.GELU] * (layers - 1)
    assert kinds == [*hidden, nn.Linear]  # BN between each hidden Linear and its GELU
    assert all(m.num_features == 16 for m in on.mlp if isinstance(m, nn.BatchNorm1d))
    off = DINOHead(12, 20, hidden_dim=16, bottleneck_dim=8, num_layers=layers)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in off.modules())
    assert [type(m) for m in off.mlp] == [*[nn.Linear, nn.GELU] * (layers - 1), nn.Linear]


def test_svt_heads_get_batch_norm_and_the_teacher_head_starts_equal() -> None:
    _, off = _svt(head_bn=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in off.head.modules())
    _, svt = _svt(head_bn=True)
    for head in (svt.head, svt.teacher_head):
        assert sum(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == 2  # 3 layers
    student, teacher = svt.head.state_dict(), svt.teacher_head.state_dict()
    assert student.keys() == teacher.keys() and any("running_mean" in k for k in student)
    for key, value in student.items():
        assert torch.equal(value, teacher[key]), key
    assert not any(p.requires_grad for p in svt.teacher_head.parameters())


def test_forward_backward_and_ema_with_head_bn() -> None:
    encoder, svt = _svt(head_bn=True)
    bn = [m for m in svt.head.mlp if isinstance(m, nn.BatchNorm1d)][0]
    t_bn = [m for m in svt.teacher_head.mlp if isinstance(m, nn.BatchNorm1d)][0]
    out = svt(encoder, _views(svt))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert bn.weight.grad is not None and torch.isfinite(bn.weight.grad).all()
    assert bn.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in svt.teacher_head.parameters())
    # both heads ran in train mode: their running statistics moved, each from its own batch
    mean, t_mean = bn.running_mean, t_bn.running_mean
    assert mean is not None and t_mean is not None
    assert mean.abs().sum() > 0 and t_mean.abs().sum() > 0
    assert not torch.equal(mean, t_mean)
    with torch.no_grad():
        bn.weight.add_(1.0)  # a stand-in optimizer step on the student's BN scale
    before = t_bn.weight.clone()
    svt.on_after_optimizer_step(encoder, 0.5)
    m = svt.momentum_at(0.5)
    assert torch.allclose(t_bn.weight, m * before + (1 - m) * bn.weight)  # BN affine: EMA too


def test_skipped_step_restores_the_heads_running_statistics() -> None:
    """The non-finite guard's BufferSnapshot covers every module buffer, the heads' BN too."""
    encoder, svt = _svt(head_bn=True)
    model = nn.ModuleDict({"backbone": encoder, "objective": svt})
    svt(encoder, _views(svt, seed=0))  # first forward: the teacher encoder copy is made
    snapshot = BufferSnapshot(model)
    snapshot.take()
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert any(k.startswith("objective.teacher_head.") for k in saved)
    svt(encoder, _views(svt, seed=1))  # moves every running statistic
    moved = dict(model.state_dict())
    assert not torch.equal(moved["objective.head.mlp.1.running_mean"], saved[
        "objective.head.mlp.1.running_mean"])
    assert snapshot.restore() == []
    state = model.state_dict()
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


def test_yaml_accepts_head_bn() -> None:
    from ssvrl.config.loader import ConfigError, load_config
    from ssvrl.config.schema import schema_for

    path = ROOT / "experiments/svt/k400_vit_b.yaml"  # the paper's recipe: BN-free head
    default = load_config(path, [], schema_for).objective
    assert isinstance(default, SVTConfig) and default.head_bn is False
    cfg = load_config(path, ["objective.head_bn=true"], schema_for).objective
    assert isinstance(cfg, SVTConfig) and cfg.head_bn is True
    for quick in ("quickstart.yaml", "quickstart_vit.yaml"):  # the CPU recipes use it
        cpu = load_config(ROOT / "experiments/svt" / quick, [], schema_for).objective
        assert isinstance(cpu, SVTConfig) and cpu.head_bn is True
    svt = SVT(replace(cfg, out_dim=64, proj_hidden=32, bottleneck_dim=16), 96)
    assert any(isinstance(m, nn.BatchNorm1d) for m in svt.teacher_head.modules())
    with pytest.raises(ConfigError, match="objective.head_bn"):
        load_config(path, ["objective.head_bn=sometimes"], schema_for)
