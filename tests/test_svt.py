"""SVT: DINO loss vs a slow reference, view pairing, schedules (EMA momentum, teacher
temperature, weight decay), the frozen last layer, a teacher that never gets gradients, the
centre (and its all-reduce over 2 gloo processes), the collapse warning and the YAML configs."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ssvrl.augment import AugmentConfig
from ssvrl.backbones import build_backbone
from ssvrl.engine.optim import param_groups
from ssvrl.losses.dino import dino_loss, view_pairs
from ssvrl.objectives import ViewConfig
from ssvrl.objectives.svt import SVT, SVTConfig, cosine_ramp, teacher_temperature
from tests.dist_utils import run_distributed

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**kw: object) -> SVTConfig:
    """2 global (4 frames, 32 px) + 2 local (2 frames, 16 px) views, K = 64."""
    views = (
        ViewConfig("global", frames=4, count=2, augment=AugmentConfig(crop_size=32)),
        ViewConfig("local", frames=2, count=2, augment=AugmentConfig(crop_size=16)),
    )
    base = dict(views=views, out_dim=64, proj_hidden=32, bottleneck_dim=16)
    return SVTConfig(**{**base, **kw})  # type: ignore[arg-type]


def _build(**kw: object) -> tuple[torch.nn.Module, SVT]:
    torch.manual_seed(0)
    encoder = build_backbone("vit_micro", depth=1, embed_dim=24, heads=2, patch_size=8)
    svt = SVT(_cfg(**kw), encoder.num_features)
    for t in svt.teacher_modules():
        t.requires_grad_(False)
    return encoder, svt


def _views(svt: SVT, B: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        s.name: torch.randn(B, 3, s.frames, s.augment.crop_size, s.augment.crop_size, generator=g)
        for s in svt.views()
    }


# ---------------------------------------------------------------------------------- loss
def _slow_dino(student, teacher, center, pairs, tau_s, tau_t) -> float:  # type: ignore[no-untyped-def]
    """DINO Eq. 3 written out: per pair and sample, -sum_k P_t[k] log P_s[k], float64 loops."""
    s, t, c = student.double(), teacher.double(), center.double().reshape(-1)
    total = 0.0
    for i, j in pairs:
        for b in range(s.shape[1]):
            et = [math.exp((t[i, b, k] - c[k]).item() / tau_t) for k in range(t.shape[2])]
            es = [math.exp(s[j, b, k].item() / tau_s) for k in range(s.shape[2])]
            zt, zs = sum(et), sum(es)
            total += -sum(et[k] / zt * math.log(es[k] / zs) for k in range(len(et))) / s.shape[1]
    return total / len(pairs)


def test_dino_loss_matches_the_slow_reference() -> None:
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 3, 11, generator=g), torch.randn(2, 3, 11, generator=g)
    center = torch.randn(1, 11, generator=g) * 0.1
    pairs = view_pairs(["g0", "g1"], ["g0", "g1", "l0", "l1", "l2"])
    got = dino_loss(student, teacher, center, pairs, 0.1, 0.04)
    assert got.item() == pytest.approx(_slow_dino(student, teacher, center, pairs, 0.1, 0.04),
                                       rel=1e-5)  # fmt: skip


def test_view_pairing() -> None:
    assert view_pairs(["g0", "g1"], ["g0", "g1", "l0"]) == [(0, 1), (0, 2), (1, 0), (1, 2)]
    svt = SVT(SVTConfig(), 16)  # the paper's views: 2 global + 8 local
    assert svt.teacher_names == ["global_0", "global_1"]
    assert len(svt.student_names) == 10 and svt.student_names[:2] == svt.teacher_names
    assert len(svt.pairs) == 2 * 10 - 2  # every student view with each teacher view but itself
    assert (0, 0) not in svt.pairs and (1, 1) not in svt.pairs
    assert all((t, s) in svt.pairs for t in (0, 1) for s in range(2, 10))
    with pytest.raises(ValueError, match="teacher_views"):
        SVTConfig(teacher_views=("nope",))


# ----------------------------------------------------------------------------- schedules
def test_schedules() -> None:
    _, svt = _build()
    assert svt.momentum_at(0.0) == pytest.approx(0.996)
    assert svt.momentum_at(0.5) == pytest.approx(0.998)
    assert svt.momentum_at(1.0) == pytest.approx(1.0)
    ms = [svt.momentum_at(p / 10) for p in range(11)]
    assert all(a <= b for a, b in zip(ms, ms[1:], strict=False))
    cfg = svt.cfg
    assert teacher_temperature(cfg, 0.0) == pytest.approx(0.04)
    assert teacher_temperature(cfg, 0.15) == pytest.approx(0.055)
    assert teacher_temperature(cfg, 0.3) == teacher_temperature(cfg, 0.9) == 0.07
    assert cosine_ramp(0.04, 0.4, 0.5) == pytest.approx(0.22)


def test_weight_decay_schedule_and_frozen_last_layer() -> None:
    encoder, svt = _build()
    opt = torch.optim.AdamW(param_groups([encoder, svt], 0.04), lr=1e-3)
    svt(encoder, _views(svt)).loss.backward()
    svt.on_before_optimizer_step(opt, 0.0, epoch=0)
    assert [g["weight_decay"] for g in opt.param_groups] == [pytest.approx(0.04), 0.0]
    assert svt.head.last_layer.weight.grad is None  # frozen in the first epoch
    before = svt.head.last_layer.weight.detach().clone()
    opt.step()
    assert torch.equal(svt.head.last_layer.weight, before)  # not moved, not decayed
    svt(encoder, _views(svt)).loss.backward()
    svt.on_before_optimizer_step(opt, 0.5, epoch=1)
    assert svt.head.last_layer.weight.grad is not None
    assert [g["weight_decay"] for g in opt.param_groups] == [pytest.approx(0.22), 0.0]
    svt.on_before_optimizer_step(opt, 1.0, epoch=2)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(0.4)


# ------------------------------------------------------------------------------- teacher
def test_teacher_gets_no_gradients_and_follows_the_ema() -> None:
    encoder, svt = _build()
    views = _views(svt)
    out = svt(encoder, views)
    out.loss.backward()
    teacher = svt.teacher_encoder.get(encoder)
    params = [*teacher.parameters(), *svt.teacher_head.parameters()]
    assert all(p.grad is None and not p.requires_grad for p in params)
    assert all(p.grad is not None for p in svt.head.mlp.parameters())
    old = [p.detach().clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.1)
    svt.on_after_optimizer_step(encoder, 0.5)  # m = 0.998
    for t, o, s in zip(teacher.parameters(), old, encoder.parameters(), strict=True):
        torch.testing.assert_close(t, 0.998 * o + 0.002 * s)


def test_center_update() -> None:
    encoder, svt = _build()
    views = _views(svt)
    svt(encoder, views)
    with torch.no_grad():
        t = svt.teacher_head(svt.teacher_encoder.get(encoder)(
            torch.cat([views["global_0"], views["global_1"]])))  # fmt: skip
    svt.on_after_optimizer_step(encoder, 0.0)  # centre = 0.9 * 0 + 0.1 * batch mean
    torch.testing.assert_close(svt.center[0], 0.1 * t.mean(dim=0), atol=1e-6, rtol=1e-5)


def _center_on_rank(rank: int, world: int) -> tuple[list[float], list[float]]:
    encoder, svt = _build()  # same weights on every rank (seeded)
    svt(encoder, _views(svt, seed=rank))  # different clips per rank
    assert svt._pending_center is not None
    local = svt._pending_center.tolist()
    svt.on_after_optimizer_step(encoder, 0.0)
    return svt.center[0].tolist(), local


def test_center_is_all_reduced_across_processes() -> None:
    (c0, m0), (c1, m1) = run_distributed(_center_on_rank, 2, timeout=120)
    assert c0 == c1  # identical centres although the batches differ
    assert m0 != m1
    want = 0.1 * (torch.tensor(m0) + torch.tensor(m1)) / 2
    torch.testing.assert_close(torch.tensor(c0), want, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------- collapse, resume
def test_collapse_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    encoder, svt = _build(collapse_check_every=1)
    svt(encoder, _views(svt))
    # The features' spread is the engine's (ssvrl.engine.collapse), for every objective.
    assert set(svt._stats) == {"teacher_entropy", "teacher_student_kl"}
    healthy = {"teacher_entropy": 0.5, "teacher_student_kl": 0.5}
    svt._stats = {k: torch.tensor(v) for k, v in healthy.items()}
    assert svt.check_collapse() == []
    svt._stats = {
        "teacher_entropy": torch.tensor(0.001),
        "teacher_student_kl": torch.tensor(0.0),
    }
    with caplog.at_level(logging.WARNING, logger="ssvrl"):
        assert svt.check_collapse() == ["one-output"]
        svt.check_collapse()
    assert sum("collapse" in r.message for r in caplog.records) == 1  # once per kind
    # the advice fits the kind: a one-output collapse needs less sharpening, not more
    assert "higher teacher_temp" in caplog.records[-1].getMessage()
    svt._stats["teacher_entropy"] = torch.tensor(0.999)
    with caplog.at_level(logging.WARNING, logger="ssvrl"):
        assert svt.check_collapse() == ["uniform"]
    assert "lower teacher_temp" in caplog.records[-1].getMessage()


def test_loss_is_the_kl_form_and_progress_is_saved() -> None:
    encoder, svt = _build()
    out = svt(encoder, _views(svt))
    assert out.loss.item() == pytest.approx(
        (out.logs["dino_ce"] - out.logs["teacher_entropy"] * math.log(64)).item(), rel=1e-4
    )  # H(Pt, Ps) - H(Pt): same gradients as DINO's cross-entropy, 0 when matched
    svt.on_after_optimizer_step(encoder, 0.25)
    fresh = SVT(svt.cfg, encoder.num_features)
    fresh.load_state_dict(svt.state_dict())
    assert fresh.progress == 0.25 and fresh.steps == 1
    assert torch.equal(fresh.center, svt.center)


# --------------------------------------------------------------------------------- YAML
def test_experiment_configs_load() -> None:
    from ssvrl.config.loader import load_config
    from ssvrl.config.schema import schema_for

    quick = load_config(ROOT / "experiments/svt/quickstart.yaml", [], schema_for)
    svt = SVT(quick.objective, 128)
    assert svt.teacher_names == ["global_0", "global_1"] and len(svt.student_names) == 8
    assert {(s.frames, s.stride, s.augment.crop_size) for s in svt.views()} == {
        (8, 4, 56), (4, 4, 32), (8, 2, 32)
    }
    assert all(s.augment.flip_p == 0 and s.augment.scale == (0.4, 1.0) for s in svt.views())
    assert quick.backbone.name == "small3d" and quick.backbone.input == "residual"
    assert quick.trainer.gradient_clip_val > 0
    vit = load_config(ROOT / "experiments/svt/quickstart_vit.yaml", [], schema_for)
    assert vit.objective == quick.objective and vit.optim == quick.optim  # the same recipe ...
    assert vit.backbone.name == "vit_micro" and vit.backbone.input == "residual"  # ... on a ViT
    k400 = load_config(ROOT / "experiments/svt/k400_vit_b.yaml", [], schema_for)
    assert k400.objective == replace(SVTConfig(), **{"name": "svt"})  # the paper's defaults
    assert k400.backbone.name == "vit_base"
