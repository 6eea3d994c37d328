"""A sampler yielding ``(epoch, index)`` keys, sharded over ranks, reproducible per epoch.

Passing the epoch inside the key lets persistent DataLoader workers seed each sample from
``(seed, epoch, index)`` without being told about epochs. Lightning calls ``set_epoch`` on it at
the start of every epoch (as it does for ``DistributedSampler``).

Mid-epoch resume: :meth:`EpochSampler.resume` makes one epoch start after the first
``consumed`` keys of its *global* order (the keys every rank together took before the
checkpoint), so a resumed run continues with exactly the batches the uninterrupted run would
have seen next. The skip is counted in global keys, not per-rank batches, so it means the same
for any number of processes; the sampler runs in the main process, so DataLoader workers do
not change it either.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled (or ordered) indices; rank ``r`` of ``P`` takes every P-th of the global order.

    With ``drop_last`` the global order is cut to a multiple of ``P`` (training); otherwise it is
    padded by wrapping (every rank gets the same number of keys). ``len`` is always the full
    epoch's, also in a resumed epoch (Lightning counts the resumed batches from its checkpoint).
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
        self.resume_epoch, self.consumed = -1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, consumed: int) -> None:
        """Start at epoch ``epoch`` (``set_epoch``), after the first ``consumed`` keys of its
        global order; other epochs are whole. ``consumed`` beyond the epoch: nothing left."""
        if consumed < 0:
            raise ValueError(f"consumed must be >= 0, got {consumed}")
        self.set_epoch(epoch)
        self.resume_epoch, self.consumed = epoch, consumed

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
        P = self.num_replicas
        total = len(self) * P
        order = (order * (total // self.size + 1))[:total]
        if self.epoch == self.resume_epoch and self.consumed:
            order = order[self.consumed :]
            order = order[: len(order) // P * P]  # equal shares when P changed since the save
        for i in order[self.rank :: P]:
            yield (self.epoch, i)
