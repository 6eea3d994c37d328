"""Callbacks: bad-video accounting and a run summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl

from ssvrl.data.bad_videos import BadVideoLog


class BadVideoSummary(pl.Callback):
    """Logs the number of unreadable videos each epoch; writes ``bad_videos.json`` at the end."""

    def __init__(self, bad: BadVideoLog, run_dir: Path) -> None:
        self.bad, self.run_dir = bad, run_dir

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Every rank reads the shared marker folder; the max over ranks is the most recent
        # count (also what Lightning wants for epoch-level values under DDP: no warning).
        count = float(self.bad.count())
        pl_module.log("data/bad_videos", count, sync_dist=True, reduce_fx="max")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            summary = {
                "count": self.bad.count(),
                "total": self.bad.total,
                "videos": self.bad.summary(),
            }
            (self.run_dir / "bad_videos.json").write_text(json.dumps(summary, indent=2))
