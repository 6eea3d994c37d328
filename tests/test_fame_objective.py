"""FAME (Ding et al., CVPR 2022) as an objective: MoCo whose query view is merged."""

from __future__ import annotations

import pytest
import torch

from ssvrl.augment import AugmentConfig, MultiViewAugment
from ssvrl.backbones import build_backbone
from ssvrl.objectives.fame import FAME, FAMEConfig
from ssvrl.objectives.moco import MoCo, MoCoConfig

PLAIN = AugmentConfig(crop_size=40, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0,
                      jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)


def _clips(views, B: int = 4, seed: int = 0) -> tuple[dict, dict]:
    """uint8 clips: a bright square moving right over a per-video static background."""
    g = torch.Generator().manual_seed(seed)
    clips, seeds = {}, {}
    for k, v in enumerate(views):
        bg = torch.randint(0, 120, (B, 3, 1, 40, 40), dtype=torch.uint8, generator=g)
        raw = bg.repeat(1, 1, v.frames, 1, 1)
        for t in range(v.frames):
            raw[:, :, t, 12:24, 2 + 3 * t : 14 + 3 * t] = 240
        clips[v.name], seeds[v.name] = raw, torch.arange(B) + 100 * k
    return clips, seeds


def test_fame_merges_the_query_view_only() -> None:
    cfg = FAMEConfig(frames=6, stride=1, proj_hidden=32, queue_size=16, augment=PLAIN)
    fame = FAME(cfg, 16)
    q, k = fame.views()
    assert q.motion.kind == "fame" and q.motion.fame.area == 0.5 and k.motion.kind == "none"
    clips, seeds = _clips(fame.views())
    merged = MultiViewAugment(fame.views()).run(clips, seeds)
    plain = MultiViewAugment(MoCo(MoCoConfig(frames=6, stride=1, augment=PLAIN), 16).views()
                             ).run(clips, seeds)
    mask = merged.aux["clip1/fame_mask"]  # (B, 1, 1, S, S) in {0, 1}
    assert mask.shape == (4, 1, 1, 40, 40) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert float(mask.mean()) == pytest.approx(0.5, abs=0.02)  # beta = 0.5, identity crop
    torch.testing.assert_close(merged.views["clip2"], plain.views["clip2"])  # the key: as is
    fg = mask.expand_as(merged.views["clip1"]).bool()
    a, b = merged.views["clip1"], plain.views["clip1"]
    torch.testing.assert_close(a[fg], b[fg])  # the foreground is the clip's own
    assert (a[~fg] != b[~fg]).float().mean() > 0.9  # the background another video's
    partners = merged.partners["clip1"]
    assert (partners != torch.arange(4)).all()


def test_fame_loss_decreases_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=8)
    aug = AugmentConfig(crop_size=32)
    cfg = FAMEConfig(frames=8, stride=1, proj_hidden=32, queue_size=12, momentum=0.9, augment=aug)
    obj = FAME(cfg, encoder.num_features)
    clips, seeds = _clips(obj.views(), B=6)
    views = MultiViewAugment(obj.views())(clips, seeds)
    assert "clip1/fame_mask" in views
    with torch.no_grad():  # fill the queue with this batch's keys
        obj.run(encoder, views)
        obj.on_after_optimizer_step(encoder, 0.0)
    opt = torch.optim.Adam([*encoder.parameters(), *obj.parameters()], lr=1e-3)
    losses = []
    for _ in range(20):
        out = obj.run(encoder, views)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.on_after_optimizer_step(encoder, 0.5)
        losses.append(float(out.loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]
