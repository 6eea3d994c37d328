"""Evaluation across processes: disjoint shards of the videos, features gathered in order.

A ``DistributedSampler`` pads the dataset to a multiple of the world size by repeating
videos, which counts those videos twice in a test metric. Here rank ``r`` of ``P`` extracts
videos ``r, r + P, r + 2P, ...`` (no padding: shards may differ by one video), every rank
gathers every shard and puts the rows back in dataset order, so each video is counted exactly
once and every rank holds the same features. Without a process group everything is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ssvrl.eval.features import Augment, FeatureSet, extract_features
from ssvrl.utils.dist import is_dist, rank, world_size


def shard_indices(size: int, rank_: int, world: int) -> list[int]:
    """Rank ``rank_``'s videos out of ``size``: every ``world``-th from ``rank_`` (disjoint,
    covering, no padding)."""
    return list(range(rank_, size, world))


def _comm_device() -> torch.device:
    """NCCL moves CUDA tensors only; gloo CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (n_r, ...) from every rank in rank order; ``n_r`` may differ by rank.

    Rows are padded to the largest ``n_r`` for ``all_gather`` and the padding is dropped.
    Returns ``x`` on one process; the result is on ``x``'s device.
    """
    if not is_dist():
        return x
    if x.dtype == torch.bool:  # not every backend gathers bool
        return gather_rows(x.to(torch.uint8)).bool()
    dev = _comm_device()
    n = torch.tensor([x.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(counts), *x.shape[1:]), dtype=x.dtype, device=dev)
    padded[: x.shape[0]] = x.to(dev)
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]).to(x.device)


def gather_feature_set(local: FeatureSet, size: int) -> FeatureSet:
    """Every rank's shard of a ``size``-video dataset, in dataset order (``index`` 0..size-1).

    Raises:
        RuntimeError: a video missing or present twice (shards not disjoint or not covering).
    """
    index = gather_rows(local.index)  # (size,)
    order = torch.argsort(index)
    if not torch.equal(index[order], torch.arange(size)):
        raise RuntimeError(
            f"gathered features do not cover videos 0..{size - 1} exactly once "
            f"({index.numel()} rows gathered)"
        )
    aug = None if local.augmented is None else gather_rows(local.augmented)[order]
    return FeatureSet(
        gather_rows(local.feats)[order],  # (size, K, D)
        gather_rows(local.labels)[order],
        gather_rows(local.valid)[order],
        index[order],
        aug,
    )


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), once: NCCL
    with one GPU per ``LOCAL_RANK`` when CUDA is available, else gloo. True when distributed."""
    if is_dist():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def device_for_rank() -> torch.device:
    """This process's device: its ``LOCAL_RANK`` GPU, or the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if is_dist() else 0)



def extract_sharded(
    backbone: nn.Module,
    dataset: Dataset,
    *,
    clips_per_video: int,
    dim: int,
    batch_size: int,
    num_workers: int,
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    augment: Augment | None = None,
    copies: int = 0,
    seed: int = 0,
) -> FeatureSet:
    """:func:`extract_features` of this rank's shard of ``dataset`` (items carry their dataset
    ``index``), gathered from every rank in dataset order. A rank with no videos (more ranks
    than videos) contributes empty tensors of shape ``(0, clips_per_video, dim)``."""
    size = len(dataset)  # type: ignore[arg-type]
    shard = shard_indices(size, rank(), world_size())
    if shard:
        loader = DataLoader(
            Subset(dataset, shard), batch_size=batch_size, num_workers=num_workers
        )
        local = extract_features(
            backbone, loader, transform, device, augment=augment, copies=copies, seed=seed
        )
    else:
        K = clips_per_video
        aug = torch.zeros(0, copies, K, dim) if augment is not None and copies > 0 else None
        empty = torch.zeros(0, dtype=torch.long)
        local = FeatureSet(torch.zeros(0, K, dim), empty, empty.bool(), empty, aug)
    return gather_feature_set(local, size)
