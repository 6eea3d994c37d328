"""InfoNCE against a slow reference written from CVRL Eq. 1, and across 2 gloo processes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssvrl.losses.info_nce import info_nce


def slow_info_nce(
    z1: torch.Tensor, z2: torch.Tensor, tau: float, ids: list[int] | None = None
) -> torch.Tensor:
    """Eq. 1 literally: for each of the 2N anchors,
    -log(exp(s_ip / tau) / sum_{k != i} exp(s_ik / tau)); with ``ids``, the sum also skips
    other clips of the anchor's own video (repeated augmentation), except its positive."""
    z = [F.normalize(v, dim=0) for v in torch.cat([z1, z2]).double()]
    n = z1.shape[0]
    video = (ids or list(range(n))) * 2
    total = torch.zeros((), dtype=torch.float64)
    for i in range(2 * n):
        p = i + n if i < n else i - n
        negatives = [k for k in range(2 * n) if k != i and (k == p or video[k] != video[i])]
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in negatives)
        total = total - (float(z[i] @ z[p]) / tau - math.log(denom))
    return total / (2 * n)


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_matches_reference(tau: float) -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    got = info_nce(z1, z2, tau)
    assert torch.allclose(got.double(), slow_info_nce(z1, z2, tau), atol=1e-5)


def test_same_video_rows_are_not_negatives() -> None:
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    ids = [4, 4, 9, 2, 9, 9]  # rows 0-1 one video, rows 2, 4, 5 another
    got = info_nce(z1, z2, 0.2, video_ids=torch.tensor(ids))
    assert torch.allclose(got.double(), slow_info_nce(z1, z2, 0.2, ids), atol=1e-5)
    unique = info_nce(z1, z2, 0.2, video_ids=torch.arange(6))
    assert torch.allclose(unique, info_nce(z1, z2, 0.2))  # distinct ids change nothing
    assert not torch.allclose(got, unique)


def test_perfect_pairs_give_low_loss_and_random_high() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 32, generator=g)
    aligned = info_nce(z, z + 1e-3 * torch.randn(8, 32, generator=g), 0.1)
    shuffled = info_nce(z, z[torch.randperm(8, generator=g)], 0.1)
    assert aligned < 0.1 < shuffled


def test_gradients_finite_under_extreme_inputs() -> None:
    z1 = torch.full((4, 8), 1e4, requires_grad=True)
    z2 = torch.full((4, 8), 1e4, requires_grad=True)
    loss = info_nce(z1, z2, 0.05)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="same shape"):
        info_nce(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.randn(3, 4), torch.randn(3, 4), 0.0)
