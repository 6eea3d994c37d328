"""LightningDataModule for pretraining: a built dataset -> DataLoader with an EpochSampler."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ssvrl.data.dataset import PretrainDataset, collate_samples
from ssvrl.data.epoch_sampler import EpochSampler


class PretrainDataModule(pl.LightningDataModule):
    """Uint8 multi-view samples; sharding over ranks by :class:`EpochSampler` (so Lightning must
    be built with ``use_distributed_sampler=False``).

    ``batch_size`` counts samples per process and step; with repeated augmentation
    (``dataset.decode.repeats = R``) a batch holds ``batch_size / R`` videos, R samples each.
    """

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
