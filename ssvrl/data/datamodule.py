"""LightningDataModule for pretraining: a built dataset -> DataLoader with an EpochSampler."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ssvrl.data.dataset import PretrainDataset
from ssvrl.data.epoch_sampler import EpochSampler


class PretrainDataModule(pl.LightningDataModule):
    """Uint8 multi-view samples; sharding over ranks by :class:`EpochSampler` (so Lightning must
    be built with ``use_distributed_sampler=False``)."""

    def __init__(
        self, dataset: PretrainDataset, batch_size: int, num_workers: int, seed: int
    ) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.num_workers, self.seed = (
            dataset, batch_size, num_workers, seed
        )

    def train_dataloader(self) -> DataLoader[Any]:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        dataset = self.dataset
        sampler = EpochSampler(
            len(dataset),
            shuffle=True,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            drop_last=True,
        )
        if len(sampler) < self.batch_size:
            raise ValueError(
                f"{len(dataset)} videos over {world} process(es) give {len(sampler)} per process, "
                f"fewer than data.batch_size={self.batch_size}: lower the batch size"
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
