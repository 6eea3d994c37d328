"""TEG's fine-grained loss gathered over 2 gloo processes equals the 1-process loss on the
concatenated batch, and so do the gradients, with DIFFERENT inputs on each rank."""

from __future__ import annotations

import pytest
import torch

from ssvrl.objectives.teg import fine_grained_nce
from tests.dist_utils import run_distributed

B, TS, TL, E, TAU = 3, 2, 4, 6, 0.1
IDS = torch.tensor([4, 9, 4, 9, 1, 2])  # videos repeated within and across the two ranks


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    short = torch.randn(2 * B, TS, E, generator=g)
    long = torch.randn(2 * B, TL, E, generator=g)
    match = torch.randint(0, TL, (2 * B, TS), generator=g)
    return short, long, match


def _rank_fn(rank: int, world: int, with_ids: bool, cross_video: bool) -> tuple:
    short, long, match = _inputs()
    rows = slice(rank * B, (rank + 1) * B)
    s = short[rows].clone().requires_grad_(True)
    lo = long[rows].clone().requires_grad_(True)
    ids = IDS[rows] if with_ids else None
    loss = fine_grained_nce(s, lo, match[rows], TAU, video_ids=ids, cross_video=cross_video)
    (loss / world).backward()  # DDP averages gradients over ranks
    return float(loss), s.grad.tolist(), lo.grad.tolist()


@pytest.mark.parametrize(("with_ids", "cross_video"), [(False, True), (True, True), (False, False)])
def test_two_process_fine_loss_and_grad_equal_single_process(
    with_ids: bool, cross_video: bool
) -> None:
    short, long, match = _inputs()
    short.requires_grad_(True)
    long.requires_grad_(True)
    ids = IDS if with_ids else None
    ref = fine_grained_nce(short, long, match, TAU, video_ids=ids, cross_video=cross_video)
    ref.backward()
    results = run_distributed(_rank_fn, 2, with_ids, cross_video, timeout=90)
    assert abs(sum(r[0] for r in results) / 2 - float(ref)) < 1e-5
    g_short = torch.tensor(results[0][1] + results[1][1])
    g_long = torch.tensor(results[0][2] + results[1][2])
    assert short.grad is not None and long.grad is not None
    assert torch.allclose(g_short, short.grad, atol=1e-6)
    assert torch.allclose(g_long, long.grad, atol=1e-6)
    # The ranks' inputs differ, so a gather that dropped the other rank's gradient would fail.
    assert not torch.allclose(torch.tensor(results[0][2]), torch.tensor(results[1][2]))
