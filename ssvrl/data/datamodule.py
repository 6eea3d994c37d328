"""LightningDataModule for pretraining: a built dataset -> DataLoader with an EpochSampler;
optionally the online probe's test videos, sharded over ranks without padding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssvrl.data.dataset import PretrainDataset, collate_samples
from ssvrl.data.epoch_sampler import EpochSampler


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + P, ...`` of ``0..size-1``: every index on exactly one of ``P``
    ranks, no padding (a ``DistributedSampler`` pads with repeats, which summed counts would
    count twice); ranks may get one index fewer than others."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = range(rank, size, num_replicas)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


class PretrainDataModule(pl.LightningDataModule):
    """Uint8 multi-view samples; sharding over ranks by :class:`EpochSampler` (so Lightning must
    be built with ``use_distributed_sampler=False``).

    ``batch_size`` counts samples per process and step; with repeated augmentation
    (``dataset.decode.repeats = R``) a batch holds ``batch_size / R`` videos, R samples each.
    ``val_dataset``: the online probe's test clips (``EvalClipDataset``), in batches of
    ``val_batch_size`` videos, each on one rank (:class:`ShardSampler`); None: no validation.
    """

    def __init__(
        self,
        dataset: PretrainDataset,
        batch_size: int,
        num_workers: int,
        seed: int,
        val_dataset: Dataset[dict[str, Any]] | None = None,
        val_batch_size: int = 16,
    ) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.num_workers, self.seed = (
            dataset, batch_size, num_workers, seed
        )
        self.val_dataset, self.val_batch_size = val_dataset, val_batch_size

    def _world_rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)

    def val_dataloader(self) -> DataLoader[Any] | list[DataLoader[Any]]:
        if self.val_dataset is None:
            return []  # no val loop (the trainer is also built with limit_val_batches=0)
        world, rank = self._world_rank()
        return DataLoader(
            self.val_dataset,
            batch_size=self.val_batch_size,
            sampler=ShardSampler(len(self.val_dataset), world, rank),  # type: ignore[arg-type]
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader[Any]:
        world, rank = self._world_rank()
        dataset = self.dataset
        repeats = dataset.decode.repeats
        if self.batch_size % repeats:
            raise ValueError(
                f"data.batch_size={self.batch_size} is not a multiple of data.repeats={repeats}"
            )
        videos_per_batch = self.batch_size // repeats
        sampler = EpochSampler(
            len(dataset),
            shuffle=True,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            drop_last=True,
        )
        if len(sampler) < videos_per_batch:
            raise ValueError(
                f"{len(dataset)} videos over {world} process(es) give {len(sampler)} per process, "
                f"fewer than the {videos_per_batch} videos of a batch: lower data.batch_size"
            )
        return DataLoader(
            dataset,
            batch_size=videos_per_batch,
            sampler=sampler,
            collate_fn=collate_samples,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
