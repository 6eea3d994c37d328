"""Gathered InfoNCE on 2 gloo processes equals the 1-process loss on the concatenated batch, and
so do the gradients, with DIFFERENT inputs on each rank (contract 4 of ARCHITECTURE.md)."""

from __future__ import annotations

import pytest
import torch

from ssvrl.losses.info_nce import info_nce
from tests.dist_utils import run_distributed

B, D, TAU = 4, 8, 0.1


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(2 * B, D, generator=g), torch.randn(2 * B, D, generator=g)


IDS = torch.tensor([0, 5, 5, 1, 5, 2, 0, 3])  # videos repeated across the two ranks


def _rank_fn(rank: int, world: int, with_ids: bool = False) -> tuple[float, list, list]:
    z1, z2 = _inputs()
    a = z1[rank * B : (rank + 1) * B].clone().requires_grad_(True)
    b = z2[rank * B : (rank + 1) * B].clone().requires_grad_(True)
    ids = IDS[rank * B : (rank + 1) * B] if with_ids else None
    loss = info_nce(a, b, TAU, video_ids=ids)
    # DDP averages gradients over ranks; the global loss is the mean of the per-rank losses.
    (loss / world).backward()
    return float(loss), a.grad.tolist(), b.grad.tolist()  # plain lists cross processes safely


def _rank_fn_ids(rank: int, world: int) -> tuple[float, list, list]:
    return _rank_fn(rank, world, with_ids=True)


@pytest.mark.parametrize("with_ids", [False, True])
def test_two_process_loss_and_grad_equal_single_process(with_ids: bool) -> None:
    z1, z2 = _inputs()
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    ref = info_nce(z1, z2, TAU, video_ids=IDS if with_ids else None)
    ref.backward()
    results = run_distributed(_rank_fn_ids if with_ids else _rank_fn, 2, timeout=90)
    mean_loss = sum(r[0] for r in results) / 2
    assert abs(mean_loss - float(ref)) < 1e-5
    g1 = torch.tensor(results[0][1] + results[1][1])
    g2 = torch.tensor(results[0][2] + results[1][2])
    assert torch.allclose(g1, z1.grad, atol=1e-6)
    assert torch.allclose(g2, z2.grad, atol=1e-6)
    # The inputs differ between ranks, so a gather without the gradient sum would fail here.
    assert not torch.allclose(torch.tensor(results[0][1]), torch.tensor(results[1][1]))
