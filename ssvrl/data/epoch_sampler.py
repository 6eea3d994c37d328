"""A sampler yielding ``(epoch, index)`` keys, sharded over ranks, reproducible per epoch.

Passing the epoch inside the key lets persistent DataLoader workers seed each sample from
``(seed, epoch, index)`` without being told about epochs. Lightning calls ``set_epoch`` on it at
the start of every epoch (as it does for ``DistributedSampler``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled (or ordered) indices; rank ``r`` of ``P`` takes every P-th of the global order.

    With ``drop_last`` the global order is cut to a multiple of ``P`` (training); otherwise it is
    padded by wrapping (every rank gets the same number of keys).
    """

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = True,
    ) -> None:
        if size <= 0:
            raise ValueError("the dataset is empty")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.num_replicas
        return -(-self.size // self.num_replicas)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.num_replicas
        order = (order * (total // self.size + 1))[:total]
        for i in order[self.rank :: self.num_replicas]:
            yield (self.epoch, i)
