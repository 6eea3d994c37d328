"""The LightningModule of fine-tuning: encoder + dropout + linear classifier, end to end.

Unlike the linear probe (frozen features), every encoder weight and batch-norm statistic is
trained with the labels (the "fine-tune" protocol of CVRL Sec. 4.3 on UCF101 / HMDB51). Uint8
clips arrive from the loader, one random clip per video and epoch; :meth:`on_after_batch_transfer`
augments them on the device (the GPU when there is one) with per-clip seeds drawn by the
dataset, as pretraining does.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.augment import AugmentConfig, VideoAugment
from ssvrl.config.schema import FinetuneConfig
from ssvrl.engine.optim import build_optimizer, param_groups, warmup_cosine

VIEW = "clip"  # the name of the training dataset's one view


class FinetuneModule(pl.LightningModule):
    """``backbone`` (B, C, T, H, W) -> (B, D), then dropout and a new ``Linear(D, classes)``.

    Args:
        backbone: the encoder, already holding its starting weights.
        num_features: D, the encoder's output width.
        num_classes: classes of the labelled dataset.
        augment: the training clips' recipe (crop size included).
        recipe: optimiser, schedule and regularisation settings.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_classes: int,
        augment: AugmentConfig,
        recipe: FinetuneConfig,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(recipe.dropout)
        self.head = nn.Linear(num_features, num_classes)
        # Small normal init of the new classifier, zero bias (our choice; common for video
        # heads): the first steps' gradients into the pretrained encoder stay small.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.augment = VideoAugment(augment)
        self.recipe = recipe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float (B, C, T, H, W) -> logits (B, num_classes)."""
        return self.head(self.dropout(self.backbone(x)))  # (B, D) -> (B, num_classes)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """Everything but the augmentation seeds, which are read on the host."""
        if not isinstance(batch, dict) or "seeds" not in batch:
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        rest = {k: v for k, v in batch.items() if k != "seeds"}
        moved = super().transfer_batch_to_device(rest, device, dataloader_idx)
        return {**moved, "seeds": batch["seeds"]}

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if "views" not in batch:
            return batch
        seeds = torch.as_tensor(batch["seeds"][VIEW]).cpu()  # (B,)
        clip = self.augment(batch["views"][VIEW], seeds)  # uint8 (B, C, T, H, W) -> (B, C, T, S, S)
        return {"clip": clip, "label": batch["label"], "index": batch["index"]}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, y = batch["clip"], batch["label"]
        logits = self(x)  # (B, num_classes)
        loss = F.cross_entropy(logits, y, label_smoothing=self.recipe.label_smoothing)
        B = y.shape[0]
        acc = (logits.detach().argmax(dim=1) == y).float().mean()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=B)
        self.log("train/acc", acc, prog_bar=True, batch_size=B)
        return loss

    def configure_optimizers(self) -> Any:
        """Two lrs (encoder ``lr * backbone_lr_mult``, classifier ``lr``), each with and
        without weight decay; linear warm-up then cosine decay to 0, per step."""
        r = self.recipe
        groups = []
        for name, module, lr in (
            ("backbone", self.backbone, r.lr * r.backbone_lr_mult),
            ("head", self.head, r.lr),
        ):
            decay, no_decay = param_groups([module], r.weight_decay)
            groups += [
                {**g, "lr": lr, "name": f"{name}{suffix}"}  # names: LearningRateMonitor's keys
                for g, suffix in ((decay, ""), (no_decay, "_no_decay"))
                if g["params"]
            ]
        opt = build_optimizer(r.optimizer, groups, r.lr, r.momentum)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(r.warmup_epochs * total / max(self.trainer.max_epochs or 1, 1))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
