"""The LightningModule of pretraining: a backbone, an objective and the device-side augmentation.

Uint8 clips arrive from the loader; :meth:`on_after_batch_transfer` augments them on the device
(the GPU when there is one), batched, each view with its own recipe and each clip with
parameters drawn from its own seed; :meth:`training_step` hands the views to the objective's
:meth:`~ssvrl.objectives.base.Objective.run` (its forward plus the add-ons set in YAML).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ssvrl.augment import MultiViewAugment
from ssvrl.config.schema import OptimConfig
from ssvrl.engine.optim import build_optimizer, param_groups, warmup_cosine
from ssvrl.objectives.addons import resolve_layer
from ssvrl.objectives.base import Objective


class PretrainModule(pl.LightningModule):
    def __init__(
        self, backbone: nn.Module, objective: Objective, optim: OptimConfig, global_batch_size: int
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.objective = objective
        self.optim_cfg = optim
        self.global_batch_size = global_batch_size
        self.augment = MultiViewAugment(objective.views())
        for teacher in objective.teacher_modules():
            teacher.requires_grad_(False)
        if objective.motion_align is not None:  # a wrong layer name fails now, not at step 1
            resolve_layer(backbone, objective.motion_align.cfg.layer)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """Move everything but the augmentation seeds: they are read on the host, so keeping
        them there saves a device-to-host sync per view and step."""
        if not isinstance(batch, dict) or "seeds" not in batch:
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        rest = {k: v for k, v in batch.items() if k != "seeds"}
        moved = super().transfer_batch_to_device(rest, device, dataloader_idx)
        return {**moved, "seeds": batch["seeds"]}

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if "views" not in batch:
            return batch
        # uint8 (B, C, T, H, W) per view -> float (B, C, T, S, S) per view (sizes may differ),
        # plus the "<view>/motion" / "<view>/fame_mask" companions of views that use motion.
        views = self.augment(batch["views"], batch["seeds"], batch.get("motion"))
        return {**batch, "views": views}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # run = forward plus the YAML add-ons (MCL's motion alignment), see objectives.base.
        if self.objective.supports_repeats:
            out = self.objective.run(self.backbone, batch["views"], video_ids=batch["index"])
        else:
            out = self.objective.run(self.backbone, batch["views"])
        B = batch["label"].shape[0]
        self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=B, sync_dist=False)
        for key, value in out.logs.items():
            self.log(f"train/{key}", value, batch_size=B)
        return out.loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        self.objective.on_after_optimizer_step(self.backbone, min(self.global_step / total, 1.0))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optional objective hook ``on_before_optimizer_step(optimizer, progress, epoch)``.

        Lightning calls this after backward and before gradient clipping and the optimizer
        step; an objective that defines the hook can change per-step optimizer settings (SVT /
        DINO's weight-decay schedule) or drop gradients (DINO's last layer frozen in the first
        epoch). ``progress`` is the fraction of training steps done, as in
        ``on_after_optimizer_step``; ``epoch`` the current epoch (0-based).
        """
        hook = getattr(self.objective, "on_before_optimizer_step", None)
        if hook is not None:
            total = max(int(self.trainer.estimated_stepping_batches), 1)
            hook(optimizer, min(self.global_step / total, 1.0), self.current_epoch)

    def configure_optimizers(self) -> Any:
        c = self.optim_cfg
        lr = c.lr * self.global_batch_size / 256 if c.lr_scaling == "linear" else c.lr
        groups = param_groups([self.backbone, self.objective], c.weight_decay)
        opt = build_optimizer(c.name, groups, lr, c.momentum)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = total / max(self.trainer.max_epochs or 1, 1)
        warmup = int(c.warmup_epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, total, warmup, c.min_lr_ratio, c.schedule == "cosine")
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
