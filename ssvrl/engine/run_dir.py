"""One run folder for all the processes of a multi-process run.

``make_run_dir`` picks the next free ``version_N``. Launched by ``torchrun``, SLURM or
Lightning's own DDP launcher, every process runs ``ssvrl fit`` from the start, so each used to
pick (and create) its own folder: two ``version_*`` folders per run, the config and bad-video
markers split between them, and a ``FileExistsError`` when two ranks raced for the same N.
Nothing can be agreed before the process group exists, so:

1. only the process whose launcher says it is global rank 0 (:func:`launch_rank`) creates
   the folder; the others work in a private placeholder;
2. once Lightning has set up the process group, :class:`SharedRunDir` broadcasts rank 0's
   folder and the other ranks adopt it (the shared bad-video markers live there), as
   Lightning's ``ModelCheckpoint`` does with its ``dirpath``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytorch_lightning as pl

from ssvrl.data.bad_videos import BadVideoLog

PLACEHOLDER_PREFIX = "ssvrl-rank-"


def launch_rank(devices_per_node: int) -> int:
    """This process's global rank as its launcher set it, before any process group: ``RANK``
    (torchrun), ``SLURM_PROCID`` (srun), else ``NODE_RANK * devices + LOCAL_RANK`` (the
    children Lightning's DDP launcher starts); 0 for a plain single-process run."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return node * devices_per_node + local


def placeholder_run_dir() -> Path:
    """A private folder for a rank other than 0 until :class:`SharedRunDir` hands it rank 0's."""
    return Path(tempfile.mkdtemp(prefix=PLACEHOLDER_PREFIX))


class SharedRunDir(pl.Callback):
    """At ``setup`` (process group up, before any batch or DataLoader worker), every rank
    takes rank 0's run folder; the bad-video logs move into it: the training set's
    (``bad_videos/``) and the online probe's test set's (``bad_videos_test/``, the datamodule's
    ``val_dataset.bad``), so a video found unreadable on any rank is logged once and counted."""

    def __init__(self, run_dir: Path, bad: BadVideoLog) -> None:
        self.run_dir, self.bad = run_dir, bad
        self.placeholder: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        shared = Path(trainer.strategy.broadcast(str(self.run_dir), src=0))
        if shared != self.run_dir:
            self.placeholder, self.run_dir = self.run_dir, shared
            self.bad.folder = shared / "bad_videos"
            val = getattr(getattr(trainer, "datamodule", None), "val_dataset", None)
            val_bad = getattr(val, "bad", None)
            if isinstance(val_bad, BadVideoLog) and val_bad.folder.parent == self.placeholder:
                val_bad.folder = shared / val_bad.folder.name

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The placeholder goes when the run ends (files opened under it may live until then)."""
        if self.placeholder is not None and self.placeholder.name.startswith(PLACEHOLDER_PREFIX):
            shutil.rmtree(self.placeholder, ignore_errors=True)
            self.placeholder = None

    @staticmethod
    def of(trainer: pl.Trainer, default: Path) -> Path:
        """The shared run folder after ``trainer.fit`` (``default`` without the callback)."""
        callbacks = getattr(trainer, "callbacks", [])
        found = [cb for cb in callbacks if isinstance(cb, SharedRunDir)]
        return found[0].run_dir if found else default
