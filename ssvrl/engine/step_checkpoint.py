"""Checkpoints at step boundaries: every ``trainer.checkpoint_every_n_steps`` and on SIGTERM.

The boundary is ``on_train_batch_start``: the previous optimizer step is complete *including*
the LightningModule's ``on_train_batch_end`` (MoCo's queue and key-encoder update, the EMA
teachers), which Lightning calls after the callbacks' ``on_train_batch_end``, so a checkpoint
written there by a callback (e.g. ``ModelCheckpoint(every_n_train_steps=...)``) would miss
that step's teacher update. Nothing of the next step has run yet: its batch has been fetched
and augmented, both functions of per-sample seeds only (``ssvrl.data.dataset``,
``ssvrl.augment``), so the resumed run fetches it again identically.

Lightning's batch counters at that point say the next batch is "ready"; restored as such,
Lightning would count one logging step twice (``_batches_that_stepped``). The written counters
are therefore those of the end of the previous step (``ready = started``), the state Lightning
itself resumes cleanly from (``RESTARTED_ON_LAST``). The data position
(``ssvrl.data.datamodule``) and the RNG states (``ssvrl.engine.rng_state``) complete the
picture: a resumed run continues bit for bit.

SIGTERM: :class:`PreemptionSignalConnector` replaces Lightning's handler (why:
``ssvrl.engine.preemption``) by one that only sets a
:class:`~ssvrl.engine.preemption.StopFlag`. Every rank checks its flag here; one
all-reduce makes the decision common (any rank stops all), all ranks write ``last.ckpt``
together (``Trainer.save_checkpoint`` must be called on every rank) and raise
:class:`~ssvrl.engine.preemption.Preempted`.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.connectors.signal_connector import _SignalConnector

from ssvrl.engine.preemption import Preempted, StopFlag

__all__ = ["PreemptionSignalConnector", "StepCheckpoint"]

log = logging.getLogger("ssvrl")


class PreemptionSignalConnector(_SignalConnector):
    """Lightning's signal connector with its SIGTERM handler replaced by ``flag.handler``.

    Lightning registers its handlers at the start of ``Trainer.fit`` and restores the previous
    ones at teardown; the SLURM auto-requeue handler (SIGUSR1) is left as Lightning sets it.
    ``received_sigterm`` stays False, so Lightning's loops never raise ``SIGTERMException``.
    """

    def __init__(self, trainer: Any, flag: StopFlag) -> None:
        super().__init__(trainer)
        self.flag = flag

    def register_signal_handlers(self) -> None:
        super().register_signal_handlers()
        self._register_signal(signal.SIGTERM, self.flag.handler)


class StepCheckpoint(pl.Callback):
    """Writes ``<ModelCheckpoint dirpath>/last.ckpt`` every ``every_n_steps`` optimizer steps
    (0: never) and, then stopping, when ``flag`` is set (see the module docstring)."""

    def __init__(self, checkpoints: ModelCheckpoint, every_n_steps: int, flag: StopFlag) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.checkpoints, self.every_n_steps, self.flag = checkpoints, every_n_steps, flag
        self._saved_step = -1
        self._saving = False

    @property
    def path(self) -> Path:
        """``last.ckpt`` in the ModelCheckpoint's folder (rank 0's, broadcast at its setup)."""
        return Path(str(self.checkpoints.dirpath)) / "last.ckpt"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_step = trainer.global_step  # a resumed run does not rewrite its start

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        stop = self.flag.requested
        if trainer.world_size > 1:  # one all-reduce per step: any rank's SIGTERM stops all
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self.save(trainer)
            log.debug("SIGTERM: checkpoint of step %d written to %s", step, self.path)
            raise Preempted(self.path, step, trainer.current_epoch)
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step:
            self.save(trainer)

    def save(self, trainer: pl.Trainer) -> None:
        """``last.ckpt`` now; every rank must call this (Lightning gathers and barriers)."""
        self._saving = True
        try:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state
        finally:
            self._saving = False
        self._saved_step = trainer.global_step

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._saving:
            between_steps(checkpoint)

    @staticmethod
    def arm(trainer: Any, flag: StopFlag) -> None:
        """Let ``flag`` (set by SIGTERM) stop ``trainer``: its signal connector and its
        StepCheckpoint use it. A trainer without a StepCheckpoint is left alone."""
        found = [c for c in getattr(trainer, "callbacks", []) if isinstance(c, StepCheckpoint)]
        if found:
            found[0].flag = flag
            trainer._signal_connector = PreemptionSignalConnector(trainer, flag)


def between_steps(checkpoint: dict[str, Any]) -> None:
    """Rewrite the saved training batch progress as at the end of the previous step: the
    fetched-but-not-started batch is not "ready" (see the module docstring)."""
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    for part in ("total", "current"):
        progress[part]["ready"] = progress[part]["started"]
    progress["is_last_batch"] = False
