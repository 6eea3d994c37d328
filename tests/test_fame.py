"""FAME foreground-background merging: mask area, foreground found, merge provenance, seeds."""

from __future__ import annotations

import pytest
import torch

from ssvrl.augment import FameConfig, fame, fame_mask, fame_merge, fame_partners


def _scene(
    b: int = 4, t: int = 5, size: int = 32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of a red square moving over a still green-ish textured background.

    Returns uint8 (B, 3, T, S, S) and the bool (B, S, S) union of the square's positions.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(b, 3, t, size, size, dtype=torch.uint8)
    x[:, 1] = torch.randint(90, 160, (b, 1, size, size), generator=g, dtype=torch.uint8)
    x[:, 2] = torch.randint(0, 60, (b, 1, size, size), generator=g, dtype=torch.uint8)
    where = torch.zeros(b, size, size, dtype=torch.bool)
    for i in range(b):
        y0 = int(torch.randint(0, size - 14, (1,), generator=g))
        for k in range(t):
            x0 = 2 + 2 * k + i
            x[i, :, k, y0 : y0 + 8, x0 : x0 + 8] = torch.tensor([230, 20, 20]).view(3, 1, 1)
            where[i, y0 : y0 + 8, x0 : x0 + 8] = True
    return x, where


@pytest.mark.parametrize("area", [0.5, 0.2, 0.73])
def test_mask_keeps_the_configured_area(area: float) -> None:
    x, _ = _scene()
    mask = fame_mask(x, FameConfig(area=area))
    assert mask.shape == (4, 1, 1, 32, 32) and mask.dtype == torch.bool
    assert (mask.flatten(1).sum(dim=1) == round(area * 32 * 32)).all()


def test_mask_finds_the_moving_foreground() -> None:
    x, where = _scene()
    area = where.flatten(1).sum(1).float() / (32 * 32)  # the square's share of the frame
    mask = fame_mask(x, FameConfig(area=float(area.max())))[:, 0, 0]  # (B, S, S)
    recall = (mask & where).flatten(1).sum(1).float() / where.flatten(1).sum(1)
    assert (recall > 0.75).all(), recall  # chance: the kept area, 0.125


def test_merge_takes_each_pixel_from_the_right_clip() -> None:
    x, _ = _scene(b=5)
    x = x.clone()
    x[:, :, :, 0, 0] = torch.arange(5, dtype=torch.uint8).view(5, 1, 1)  # a clip tag
    seeds = torch.tensor([11, 12, 13, 14, 15])
    merged, mask, partners = fame(x, seeds, FameConfig(area=0.5))
    assert sorted(partners.tolist()) == list(range(5)) and (partners != torch.arange(5)).all()
    full = mask.expand_as(x)
    for b in range(5):
        fg, bg = full[b], ~full[b]
        assert torch.equal(merged[b][fg], x[b][fg])
        assert torch.equal(merged[b][bg], x[int(partners[b])][bg])
    assert merged.dtype == torch.uint8
    float_merge = fame_merge(x.float() / 255, mask, partners)
    torch.testing.assert_close(float_merge, merged.float() / 255)


def test_partners_are_a_seeded_derangement() -> None:
    seeds = torch.arange(100, 108)
    p = fame_partners(seeds)
    assert torch.equal(p, fame_partners(seeds.clone()))
    assert (p != torch.arange(8)).all() and sorted(p.tolist()) == list(range(8))
    assert not torch.equal(p, fame_partners(seeds + 1)), "other seeds, other partners"
    assert fame_partners(torch.tensor([5])).tolist() == [0]  # a batch of one keeps its own


def test_mask_is_per_clip_so_split_batches_agree() -> None:
    x, _ = _scene(b=6, seed=3)
    whole = fame_mask(x)
    halves = torch.cat([fame_mask(x[:3]), fame_mask(x[3:])])
    assert torch.equal(whole, halves)
    assert torch.equal(fame_mask(x.float() / 255), whole)  # uint8 and float agree


def test_static_clip_gives_a_deterministic_mask() -> None:
    x = torch.randint(0, 256, (2, 3, 1, 16, 16), dtype=torch.uint8).repeat(1, 1, 4, 1, 1)
    one, two = fame_mask(x), fame_mask(x.clone())
    assert torch.equal(one, two) and int(one[0].sum()) == 128


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        FameConfig(area=1.5)
    with pytest.raises(ValueError):
        FameConfig(seed_fg=0.8, seed_bg=0.5)
