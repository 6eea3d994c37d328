"""LightningDataModule for pretraining: a built dataset -> DataLoader with an EpochSampler;
optionally the online probe's test videos, sharded over ranks without padding.

Resume: the module's ``state_dict`` (saved in every checkpoint by Lightning) is the data
position, the epoch and how many keys of its global order were consumed; after
``load_state_dict`` the training sampler starts there (:meth:`EpochSampler.resume`). This is
needed even at epoch boundaries: Lightning 2.6 creates the loader's iterator in
``FitLoop.setup_data`` *before* it calls ``set_epoch`` (``FitLoop.on_advance_start``), so with
workers the first resumed epoch would otherwise be drawn with the sampler's default epoch 0.

Loaders carry their own ``torch.Generator``, so creating an iterator draws nothing from the
global RNG (whose state a checkpoint restores; ``ssvrl.engine.rng_state``), and workers ignore
SIGTERM (:func:`worker_init`), which ``torchrun`` and SLURM send to the whole process group:
the main process decides when to stop (``ssvrl.engine.preemption``) and ends its workers itself.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, Sampler

from ssvrl.data.dataset import PretrainDataset, collate_samples
from ssvrl.data.epoch_sampler import EpochSampler

log = logging.getLogger("ssvrl")


def worker_init(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM: a SIGTERM sent to the process group (``torchrun``
    uses ``killpg``) would otherwise kill them and crash the main process mid-step before it
    can checkpoint. They still end when the main process shuts them down or dies (PyTorch's
    worker loop watches its parent). Lightning's worker seeding is kept when it is on."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)


def resume_position(epoch: int, progress: Mapping[str, int], batches: int) -> tuple[int, int]:
    """``(epoch, batches of it done)`` where Lightning resumes a checkpoint whose training
    batch progress (``ready/started/processed/completed`` of the current epoch) is
    ``progress``: a checkpoint saved at ``on_train_batch_end`` counts that batch as done
    (Lightning's ``RESTARTED_ON_TRAIN_BATCH_END``); a finished epoch of ``batches`` batches is
    ``(epoch + 1, 0)``."""
    done = int(progress["completed"])
    if progress["ready"] == progress["started"] == progress["processed"] == done + 1:
        done += 1
    if 0 < batches <= done:
        return epoch + 1, 0
    return epoch, done


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
        self.resume_from: dict[str, int] | None = None  # the data position to start at

    def state_dict(self) -> dict[str, Any]:
        """The data position (plain ints, for ``weights_only`` loading): the epoch and the
        keys of its global order consumed by every rank together."""
        trainer = self.trainer
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        batches = trainer.num_training_batches
        epoch, done = resume_position(
            trainer.current_epoch,
            vars(progress),
            batches if isinstance(batches, int) else 0,
        )
        return {
            "epoch": epoch,
            "consumed": done * self.videos_per_batch * trainer.world_size,
            "videos": len(self.dataset),
            "world_size": trainer.world_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if state_dict.get("videos") != len(self.dataset):
            log.warning(
                "resume: the checkpoint was trained on %s videos, the dataset now has %d: the "
                "epoch's order differs, so the resumed epoch is not the interrupted one",
                state_dict.get("videos"),
                len(self.dataset),
            )
        self.resume_from = {
            "epoch": int(state_dict["epoch"]),
            "consumed": int(state_dict["consumed"]),
        }

    def position_from_loops(self, checkpoint: Mapping[str, Any], world_size: int) -> None:
        """The data position of a checkpoint written before the datamodule saved one (older
        ssvrl): from Lightning's own loop state, as Lightning will resume it."""
        if type(self).__qualname__ in checkpoint:
            return
        try:
            loops = checkpoint["loops"]["fit_loop"]
            progress = loops["epoch_loop.batch_progress"]["current"]
            epoch = int(checkpoint["epoch"])
        except (KeyError, TypeError):
            return
        batches = len(self.dataset) // world_size // self.videos_per_batch
        epoch, done = resume_position(epoch, progress, batches)
        self.resume_from = {"epoch": epoch, "consumed": done * self.videos_per_batch * world_size}

    @property
    def videos_per_batch(self) -> int:
        return self.batch_size // self.dataset.decode.repeats

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
            worker_init_fn=worker_init,
            generator=torch.Generator().manual_seed(self.seed),
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
        if self.resume_from is not None:
            sampler.resume(self.resume_from["epoch"], self.resume_from["consumed"])
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
            worker_init_fn=worker_init,
            generator=torch.Generator().manual_seed(self.seed),
        )
