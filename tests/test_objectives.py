"""Contract tests over every registered objective: builds from defaults, finite loss on a tiny
CPU batch, gradients reach the encoder, and the loss falls when training on a fixed batch."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ssvrl.augment import VideoAugment
from ssvrl.backbones import build_backbone
from ssvrl.objectives import OBJECTIVES, ObjectiveConfig


def _batch(objective, B: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    views = {}
    for k, v in enumerate(objective.views()):
        raw = torch.randint(0, 256, (B, 3, v.frames, 40, 40), dtype=torch.uint8, generator=g)
        seeds = torch.arange(B) + 100 * k
        views[v.name] = VideoAugment(v.augment)(raw, seeds)
    return views


def _small(name: str) -> ObjectiveConfig:
    """The objective's default config, shrunk to a CPU-sized batch where it has the knobs."""
    cfg = OBJECTIVES.get(name).Config()
    fields = cfg.__dataclass_fields__
    kw: dict[str, object] = {}
    if "frames" in fields:
        kw["frames"] = 4
    if "proj_hidden" in fields:
        kw["proj_hidden"] = 32
    if "augment" in fields:
        kw["augment"] = replace(cfg.augment, crop_size=32)  # type: ignore[attr-defined]
    return replace(cfg, **kw)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_contract(name: str) -> None:
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=8)
    objective = OBJECTIVES.get(name)(_small(name), encoder.num_features)
    views = _batch(objective)
    assert set(views) == {v.name for v in objective.views()}
    out = objective(encoder, views)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert all(not v.requires_grad for v in out.logs.values())
    out.loss.backward()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    for teacher in objective.teacher_modules():
        assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_loss_decreases_on_fixed_batch(name: str) -> None:
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=8)
    objective = OBJECTIVES.get(name)(_small(name), encoder.num_features)
    views = _batch(objective, B=6)
    params = list(encoder.parameters()) + list(objective.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for _ in range(15):
        out = objective(encoder, views)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        objective.on_after_optimizer_step(encoder, 0.5)
        losses.append(float(out.loss))
    assert losses[-1] < 0.7 * losses[0]
