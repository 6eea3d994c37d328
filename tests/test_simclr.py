"""SimCLR for video: both views read the same frames; NT-Xent against the written-out formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.augment import AugmentConfig
from ssvrl.data.sampling import TemporalView
from ssvrl.objectives.simclr import SameClipSampler, SimCLR, SimCLRConfig
from tests.test_info_nce import slow_info_nce


@pytest.mark.parametrize("num_frames", [5, 29, 30, 200])
def test_sampler_gives_both_views_the_same_indices(num_frames: int) -> None:
    obj = SimCLR(SimCLRConfig(frames=8, stride=4, proj_hidden=8), 16)
    sampler = obj.clip_sampler()
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        idx = sampler(num_frames, rng, None)
        assert set(idx) == {"clip1", "clip2"}
        assert np.array_equal(idx["clip1"], idx["clip2"])
        assert len(idx["clip1"]) == 8 and idx["clip1"].max() < num_frames
        starts.add(int(idx["clip1"][0]))
    if num_frames <= 29:  # shorter than the span (8 frames x stride 4): one looped window
        assert starts == {0}
    if num_frames == 200:
        assert len(starts) > 10  # the window itself is random


def test_sampler_refuses_views_with_different_timing() -> None:
    with pytest.raises(ValueError, match="same frames"):
        SameClipSampler((TemporalView("a", 8, 2), TemporalView("b", 8, 4)))


def test_view_augment_override_applies_to_one_view() -> None:
    cfg = SimCLRConfig(augment=AugmentConfig(blur_p=0.5), view_augment={"clip2": {"blur_p": 0.1}})
    a, b = SimCLR(cfg, 16).views()
    assert (a.augment.blur_p, b.augment.blur_p) == (0.5, 0.1)
    with pytest.raises(ValueError, match="unknown view"):
        SimCLRConfig(view_augment={"clip3": {"blur_p": 0.1}})


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("with_ids", [False, True])
def test_loss_and_positive_logits_match_reference(tau: float, with_ids: bool) -> None:
    torch.manual_seed(0)
    B = 5
    enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, 16))
    obj = SimCLR(SimCLRConfig(temperature=tau, proj_hidden=8, proj_dim=6), 16)
    g = torch.Generator().manual_seed(1)
    views = {v: torch.randn(B, 3, 2, 4, 4, generator=g) for v in ("clip1", "clip2")}
    ids = [3, 3, 7, 1, 7] if with_ids else None
    out = obj(enc, views, video_ids=torch.tensor(ids) if ids else None)
    with torch.no_grad():  # the head's BN: the same joint 2B batch as in forward
        z = obj.head(enc(torch.cat([views["clip1"], views["clip2"]])))
    ref = slow_info_nce(z[:B], z[B:], tau, ids)
    assert abs(out.loss.item() - float(ref)) < 1e-5
    n = F.normalize(z.double(), dim=1)
    expected = torch.stack([n[i] @ n[B + i] for i in range(B)]) / tau
    assert out.positive_logits is not None and out.positive_logits.requires_grad
    assert torch.allclose(out.positive_logits.detach().double(), expected, atol=1e-5)
