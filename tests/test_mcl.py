"""MCL (Li et al., ICCV 2021): saliency and motion alignment against slow references written
from Sec. 3.3, double backprop reaching the encoder, and the MCL objective on a fixed batch."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from ssvrl.augment import AugmentConfig, MultiViewAugment
from ssvrl.backbones import build_backbone
from ssvrl.data.motion_sampling import MotionFocusedSampler
from ssvrl.objectives.addons import (
    MotionAlignConfig,
    MotionAlignment,
    alignment_terms,
    positive_saliency,
    resolve_layer,
)
from ssvrl.objectives.mcl import MCL, MCLConfig


class TinyEncoder(nn.Module):
    """stem (the explained layer) -> rest -> global pool; no batch norm, so the rows are
    independent and row b's saliency depends on row b only."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 4, 3, padding=1)
        self.rest = nn.Sequential(nn.Tanh(), nn.Conv3d(4, 5, 3, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.stem(x)).mean(dim=(2, 3, 4))  # (B, 5)


def _positive(feats: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """A positive logit of each row: a fixed nonlinear read-out (B, 5) -> (B,)."""
    return torch.tanh(feats @ head).sum(dim=1) * 3


def _setup(seed: int = 0) -> tuple[TinyEncoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    enc = TinyEncoder().double()
    x = torch.randn(2, 3, 3, 4, 4, dtype=torch.float64)
    head = torch.randn(5, 2, dtype=torch.float64)
    return enc, x, head


def _captured(enc: TinyEncoder, x: torch.Tensor, head: torch.Tensor, layer: str = "stem"):
    align = MotionAlignment(MotionAlignConfig(enabled=True, layer=layer))
    with align.capture(enc) as cap:
        pos = _positive(enc(x), head)
    return cap.activation, pos


@pytest.mark.parametrize("kind", ["gradcam", "released"])
def test_saliency_matches_finite_differences(kind: str) -> None:
    enc, x, head = _setup()
    act, pos = _captured(enc, x, head)
    assert act is not None and act.shape == (2, 4, 3, 4, 4)
    got = positive_saliency(act, pos, kind)  # (B, T', H', W')

    a0 = act.detach()
    eps = 1e-6
    for b in range(2):
        def pos_b(a: torch.Tensor, b: int = b) -> float:
            with torch.no_grad():
                return float(_positive(enc.rest(a).mean(dim=(2, 3, 4)), head)[b])

        grad = torch.zeros_like(a0[b])  # (C, T', H', W') by central differences
        for idx in torch.cartesian_prod(*[torch.arange(n) for n in a0.shape[1:]]).tolist():
            up, down = a0.clone(), a0.clone()
            up[(b, *idx)] += eps
            down[(b, *idx)] -= eps
            grad[tuple(idx)] = (pos_b(up) - pos_b(down)) / (2 * eps)
        C, T = grad.shape[:2]
        ref = torch.zeros(a0.shape[2:], dtype=torch.float64)  # (T', H', W')
        for c in range(C):  # Grad-CAM written out per channel (and per time step: released)
            if kind == "gradcam":
                ref += grad[c].mean() * a0[b, c]
            else:
                for t in range(T):
                    ref[t] += grad[c, t].mean() * grad[c, t]
        torch.testing.assert_close(got[b].detach(), ref.clamp(min=0), atol=1e-7, rtol=1e-5)


def _reference_terms(sal: torch.Tensor, mot: torch.Tensor) -> dict[str, float]:
    """Sec. 3.3's three alignments with plain Python loops: 1 - cosine similarity."""

    def cos(u: list[float], v: list[float]) -> float:
        nu = math.sqrt(sum(a * a for a in u))
        nv = math.sqrt(sum(a * a for a in v))
        return sum(a * b for a, b in zip(u, v, strict=True)) / max(nu * nv, 1e-16)

    B, T = sal.shape[:2]
    out = {"spatial": 0.0, "temporal": 0.0, "spatiotemporal": 0.0}
    for b in range(B):
        s = [sal[b, t].flatten().tolist() for t in range(T)]
        m = [mot[b, t].flatten().tolist() for t in range(T)]
        n = len(s[0])
        s_mean = [sum(s[t][i] for t in range(T)) / T for i in range(n)]
        m_mean = [sum(m[t][i] for t in range(T)) / T for i in range(n)]
        out["spatial"] += (1 - cos(s_mean, m_mean)) / B
        out["temporal"] += (1 - cos([sum(r) for r in s], [sum(r) for r in m])) / B
        e = [math.exp(sum(r)) for r in m]
        st = sum(e[t] / sum(e) * cos(s[t], m[t]) for t in range(T))
        out["spatiotemporal"] += (1 - st) / B
    return out


def test_alignment_terms_match_the_paper_formula() -> None:
    g = torch.Generator().manual_seed(3)
    sal = torch.rand(3, 4, 3, 3, generator=g, dtype=torch.float64)
    mot = torch.rand(3, 4, 3, 3, generator=g, dtype=torch.float64) * 2
    got = alignment_terms(sal, mot)
    ref = _reference_terms(sal, mot)
    for k, v in ref.items():
        assert float(got[k]) == pytest.approx(v, rel=1e-5, abs=1e-6), k
    # Saliency proportional to motion aligns perfectly; a dead (all-zero) saliency is finite.
    same = alignment_terms(mot * 5, mot)
    assert all(float(v) == pytest.approx(0.0, abs=1e-6) for v in same.values())
    dead = alignment_terms(torch.zeros_like(mot), mot)
    assert all(float(v) == pytest.approx(1.0) for v in dead.values())


def test_double_backprop_trains_the_layers_after_the_explained_one() -> None:
    enc, x, head = _setup(1)
    motion = torch.rand(2, 1, 3, 4, 4, dtype=torch.float64)
    align = MotionAlignment(MotionAlignConfig(enabled=True, layer="stem"))

    def loss_of(e: TinyEncoder) -> torch.Tensor:
        with align.capture(e) as cap:
            pos = _positive(e(x), head)
        return align(cap.activation, pos, motion)["align_loss"]

    loss = loss_of(enc)
    loss.backward()
    w = enc.rest[1].weight  # after the explained layer: reached only through the saliency
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert enc.stem.weight.grad is not None and enc.stem.weight.grad.abs().sum() > 0
    # The second-order gradient is the true derivative of the alignment loss (finite diffs).
    eps, idx = 1e-6, (2, 1, 1, 0, 2)
    with torch.no_grad():
        w[idx] += eps
    up = float(loss_of(enc).detach())
    with torch.no_grad():
        w[idx] -= 2 * eps
    down = float(loss_of(enc).detach())
    assert float(w.grad[idx]) == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8)


def test_layer_names_and_first_call_only() -> None:
    small = build_backbone("small3d", width=4)
    assert resolve_layer(small, "auto")[0] == "stages.3"
    with pytest.raises(ValueError, match="not a submodule.*stages"):
        resolve_layer(small, "layer3")
    enc, x, head = _setup()
    act, _ = _captured(enc, torch.cat([x, x[:1]]), head)  # one call of 3 clips
    align = MotionAlignment(MotionAlignConfig(enabled=True, layer="stem"))
    with align.capture(enc) as cap:
        enc(x)
        enc(x[:1] * 0)  # a second call (e.g. MoCo's symmetric query) is not captured
    assert cap.activation is not None and cap.activation.shape[0] == 2
    assert not enc.stem._forward_hooks  # removed on exit


def _mcl_batch(obj: MCL, B: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """uint8 clips with a moving square, through the engine's multi-view augmentation."""
    g = torch.Generator().manual_seed(seed)
    clips, seeds = {}, {}
    for k, v in enumerate(obj.views()):
        raw = torch.randint(0, 60, (B, 3, v.frames, 40, 40), dtype=torch.uint8, generator=g)
        for t in range(v.frames):
            raw[:, :, t, 10:20, 4 + 3 * t : 14 + 3 * t] = 230
        clips[v.name], seeds[v.name] = raw, torch.arange(B) + 100 * k
    return MultiViewAugment(obj.views())(clips, seeds)


def _small_mcl(**kw: Any) -> MCLConfig:
    base: dict[str, Any] = dict(frames=8, stride=1, proj_hidden=32, queue_size=64, momentum=0.9)
    return MCLConfig(**{**base, **kw})


def test_mcl_defaults_views_and_sampler() -> None:
    obj = MCL(_small_mcl(), 32)
    clip1, clip2 = obj.views()
    assert clip1.motion.kind == "mcl_crop" and clip2.motion.kind == "none"
    assert isinstance(obj.clip_sampler(), MotionFocusedSampler)
    assert obj.motion_align is not None and obj.align_view() == "clip1"
    batch = _mcl_batch(obj, B=2)
    assert batch["clip1/motion"].shape == (2, 1, 8, 112, 112)


def test_mcl_loss_with_alignment_decreases_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=8)
    cfg = _small_mcl(queue_size=12, augment=AugmentConfig(crop_size=32))
    obj = MCL(cfg, encoder.num_features)
    views = _mcl_batch(obj)
    with torch.no_grad():  # fill the queue with this batch's keys (not random unit vectors)
        obj.run(encoder, views)
        obj.on_after_optimizer_step(encoder, 0.0)
    opt = torch.optim.Adam([*encoder.parameters(), *obj.parameters()], lr=1e-3)
    losses, aligns = [], []
    for _ in range(20):
        out = obj.run(encoder, views)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.on_after_optimizer_step(encoder, 0.5)
        losses.append(float(out.loss.detach()))
        aligns.append(float(out.logs["align_loss"]))
        assert {"align_spatial", "align_temporal", "align_spatiotemporal"} <= set(out.logs)
    assert all(math.isfinite(v) for v in losses + aligns)
    assert losses[-1] < 0.7 * losses[0]
    assert min(aligns[-3:]) < aligns[0]
