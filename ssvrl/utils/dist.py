"""Process-group helpers that are no-ops on one process (no ``init_process_group`` needed).

Every loss gathers through :func:`gather_with_grad`, so the same code is correct for 1 and N
processes. The gradient rule follows from the loss being a sum over ranks: each rank's loss
depends on every rank's embeddings, so the gradient flowing back to rank r's embeddings is the
SUM over ranks of the gradients each rank computed for slice r. A plain ``all_gather`` drops
all but the local contribution (the classic wrong-gradient bug, invisible in symmetric tests).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward all_reduces (sums) the incoming gradient, keeps own slice."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)  # (world * B, ...)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        b = grad.shape[0] // dist.get_world_size()
        r = dist.get_rank()
        return grad[r * b : (r + 1) * b]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every rank along dim 0, gradients flowing back to each rank.

    All ranks must pass the same B. Returns ``x`` itself on one process.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank (no autograd): queues, kNN banks, evaluation."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (out of place); identity on one process."""
    if world_size() == 1:
        return x
    y = x.clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()
