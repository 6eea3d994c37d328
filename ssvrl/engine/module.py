"""The LightningModule of pretraining: a backbone, an objective and the device-side augmentation.

Uint8 clips arrive from the loader; :meth:`on_after_batch_transfer` augments them on the device
(the GPU when there is one), batched, each view with its own recipe and each clip with
parameters drawn from its own seed; :meth:`training_step` hands the views to the objective's
:meth:`~ssvrl.objectives.base.Objective.run` (its forward plus the add-ons set in YAML).

With an :class:`~ssvrl.engine.online_probe.OnlineProbe`, a linear head on the detached anchor
features is trained in the same step (its cross-entropy added to the returned loss, its own
parameter group, its gradients kept out of gradient clipping) and ``validation_step``
classifies the test split; without one the module is exactly the pretraining module.

Guards (issue #8): a step with a non-finite loss or gradients is skipped on every rank, its
buffer changes undone, and the run stops after ``max_nonfinite_steps`` of them in a row
(:mod:`ssvrl.engine.nonfinite`); the spread of the anchor embeddings is logged every step as
``train/embed_std`` and a warning is logged once per epoch spent collapsed
(:mod:`ssvrl.engine.collapse`).
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ssvrl.augment import MultiViewAugment
from ssvrl.config.schema import OptimConfig
from ssvrl.engine.collapse import CollapseWatch
from ssvrl.engine.nonfinite import BufferSnapshot, NonFiniteGuard, nonfinite_flags
from ssvrl.engine.online_probe import GROUP, OnlineProbe
from ssvrl.engine.optim import build_optimizer, param_groups, warmup_cosine
from ssvrl.objectives.addons import resolve_layer
from ssvrl.objectives.base import Objective

log = logging.getLogger("ssvrl")


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 5-D ``(B, C, T, H, W)`` tensor in NDHWC memory layout (same shape and values); any
    other tensor unchanged."""
    return x.contiguous(memory_format=torch.channels_last_3d) if x.dim() == 5 else x


class PretrainModule(pl.LightningModule):
    def __init__(
        self,
        backbone: nn.Module,
        objective: Objective,
        optim: OptimConfig,
        global_batch_size: int,
        online_probe: OnlineProbe | None = None,
        max_nonfinite_steps: int = 5,
        collapse_warn_std: float = 0.05,
        channels_last: bool = False,
    ) -> None:
        """``max_nonfinite_steps``: stop after that many skipped non-finite steps in a row (0:
        no guard); ``collapse_warn_std``: warn when ``train/embed_std`` stays below it for a
        whole epoch (0: log only); ``channels_last``: the backbone's 5-D weights and the
        augmented views in ``torch.channels_last_3d`` layout (NDHWC), which cuDNN's 3D
        convolutions prefer (1.6x per bf16 R3D-18 step on an H200, benchmarks/RESULTS.md)."""
        super().__init__()
        if channels_last:  # 5-D tensors only; Lightning's later .to(device) keeps the layout
            layout: dict[str, Any] = {"memory_format": torch.channels_last_3d}  # not in the stubs
            backbone = backbone.to(**layout)
        self.channels_last = channels_last
        self.backbone = backbone
        self.objective = objective
        self.online_probe = online_probe
        self.optim_cfg = optim
        self.global_batch_size = global_batch_size
        self.augment = MultiViewAugment(objective.views())
        for teacher in objective.teacher_modules():
            teacher.requires_grad_(False)
        if objective.motion_align is not None:  # a wrong layer name fails now, not at step 1
            resolve_layer(backbone, objective.motion_align.cfg.layer)
        self.guard = NonFiniteGuard(max_nonfinite_steps)
        self.collapse = CollapseWatch(objective.cfg.name, collapse_warn_std)
        self._snapshot = BufferSnapshot(self)
        self._loss: torch.Tensor | None = None  # the step's loss, checked after backward
        self._skipped = False  # this step's update was skipped by the guard

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
        if self.channels_last:
            views = {k: to_channels_last(v) for k, v in views.items()}
        return {**batch, "views": views}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._skipped = False
        if self.guard.enabled:  # buffers as before this forward, put back if the step is skipped
            self._snapshot.take()
        loss = self._training_loss(batch)
        self._loss = loss.detach()
        return loss

    def _training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        # run = forward plus the YAML add-ons (MCL's motion alignment), see objectives.base.
        if self.objective.supports_repeats:
            out = self.objective.run(self.backbone, batch["views"], video_ids=batch["index"])
        else:
            out = self.objective.run(self.backbone, batch["views"])
        B = batch["label"].shape[0]
        self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=B, sync_dist=False)
        for key, value in out.logs.items():
            self.log(f"train/{key}", value, batch_size=B)
        spread = self.collapse.observe(out.features)  # (B, D) anchors -> 0-d, on the device
        if spread is not None:
            self.log("train/embed_std", spread, batch_size=B)
        if self.online_probe is None:
            return out.loss
        probe = self.online_probe
        feats = probe.features(self.backbone, batch["views"], out.features, B)  # (B, D)
        probe_loss, top1 = probe.train_terms(feats, batch["label"])
        # Epoch means over every rank (Lightning syncs the weighted sums once, at epoch end).
        kw: dict[str, Any] = dict(on_step=False, on_epoch=True, batch_size=B, sync_dist=True)
        self.log("train/online_loss", probe_loss.detach(), **kw)
        self.log("train/online_top1", top1, **kw)
        return out.loss + probe_loss  # the head's graph is disjoint from the backbone's

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """The online probe on test videos (backbone in eval mode: no BN statistics change)."""
        if self.online_probe is not None:
            self.online_probe.eval_batch(self.backbone, batch)

    def on_validation_epoch_start(self) -> None:
        if self.online_probe is not None:
            self.online_probe.reset_counts()

    def on_validation_epoch_end(self) -> None:
        if self.online_probe is None:
            return
        # Counts are summed over ranks; each test video sits on exactly one rank (the val
        # sampler shards without padding), so none is counted twice.
        top1, videos = self.online_probe.result(
            lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")
        )
        self.log("val/online_top1", top1, sync_dist=False)
        self.log("val/online_videos", float(videos), sync_dist=False)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.guard.enabled:
            # torch.full passes the host number as a kernel argument: no copy, no sync (a
            # Python float given to self.log would become a blocking host-to-device copy).
            skipped = torch.full((), float(self.guard.skipped), device=self.device)
            self.log("train/skipped_steps", skipped, batch_size=1)
        if self._skipped:  # no update happened: EMA teachers, queues and centres stay as well
            return
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        self.objective.on_after_optimizer_step(self.backbone, min(self.global_step / total, 1.0))

    def on_train_epoch_end(self) -> None:
        # Every rank calls this (the watch all-reduces); one host read per epoch.
        self.collapse.end_epoch(self.current_epoch)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optional objective hook ``on_before_optimizer_step(optimizer, progress, epoch)``.

        Lightning calls this after backward and before gradient clipping and the optimizer
        step; an objective that defines the hook can change per-step optimizer settings (SVT /
        DINO's weight-decay schedule) or drop gradients (DINO's last layer frozen in the first
        epoch). ``progress`` is the fraction of training steps done, as in
        ``on_after_optimizer_step``; ``epoch`` the current epoch (0-based).

        First the non-finite guard (:mod:`ssvrl.engine.nonfinite`): on a skipped step every
        gradient is dropped (the optimizer then changes nothing), the buffers are put back and
        the objective's hooks are not called.
        """
        if self.guard.enabled and self._loss is not None:
            self._skipped = self._guard_step()
            if self._skipped:
                return
        hook = getattr(self.objective, "on_before_optimizer_step", None)
        if hook is not None:
            total = max(int(self.trainer.estimated_stepping_batches), 1)
            hook(optimizer, min(self.global_step / total, 1.0), self.current_epoch)
            if self.online_probe is not None:  # the objective's schedules are not the head's
                for group in optimizer.param_groups:
                    if group.get("name") == GROUP:
                        group["weight_decay"] = self.online_probe.weight_decay

    def _guard_step(self) -> bool:
        """True when this step is skipped. Host syncs: one scalar per step (the reduced flags;
        issue #10 keeps per-step syncs to this one), plus the scale on overflow steps."""
        assert self._loss is not None
        params = list(self.parameters())
        flags = nonfinite_flags(self._loss, (p.grad for p in params if p.grad is not None))
        self._loss = None
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        scale = scaler.get_scale if scaler is not None else None
        verdict = self.guard.decide(flags, params, self.global_step, scale)
        if verdict != "skip":
            return False
        new = self._snapshot.restore()
        if new and self.global_rank == 0:
            log.warning(
                "step %d skipped: %d buffers made during its forward (e.g. %s, a lazily made "
                "teacher copy) keep what that forward wrote", self.global_step, len(new), new[0]
            )  # fmt: skip
        return True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The guard's counters and the collapse watch's epoch so far (plain numbers), so a
        resumed run counts on from where it stopped."""
        checkpoint["ssvrl_guards"] = {
            "consecutive": self.guard.consecutive,
            "skipped": self.guard.skipped,
            "epoch_max_spread": self.collapse.epoch_max(),  # a host read, at saving only
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ssvrl_guards")
        if state:
            self.guard.consecutive = int(state["consecutive"])
            self.guard.skipped = int(state["skipped"])
            self.collapse.resume(state["epoch_max_spread"])

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as configured, with the online head's gradients held aside: the clipping
        factor, hence the backbone's update, is the one the run would have without the probe."""
        head = [] if self.online_probe is None else list(self.online_probe.parameters())
        held = [p.grad for p in head]
        for p in head:
            p.grad = None  # clip_grad_norm_ / clip_grad_value_ skip parameters without grad
        try:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        finally:
            for p, g in zip(head, held, strict=True):
                p.grad = g

    def configure_optimizers(self) -> Any:
        c = self.optim_cfg
        lr = c.lr * self.global_batch_size / 256 if c.lr_scaling == "linear" else c.lr
        groups = param_groups([self.backbone, self.objective], c.weight_decay)
        if self.online_probe is not None:  # own lr and weight decay, same schedule (solo-learn)
            groups.append(self.online_probe.param_group())
        opt = build_optimizer(c.name, groups, lr, c.momentum)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = total / max(self.trainer.max_epochs or 1, 1)
        warmup = int(c.warmup_epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, total, warmup, c.min_lr_ratio, c.schedule == "cosine")
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
