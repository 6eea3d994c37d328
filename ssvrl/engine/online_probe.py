"""The online linear probe: a classifier trained on detached features during pretraining.

A linear layer maps the backbone features of each batch's anchor clips to the training labels.
Its cross-entropy, on DETACHED features, is added to the pretraining loss, so the one optimizer
step also trains it, in its own parameter group (own learning rate and weight decay); the
backbone and the objective get exactly the gradients they would get without it. Every
``every_n_epochs`` the test split is classified (``val_clips`` evenly spread clips per video,
centre crop, features averaged) with the backbone in eval mode. This is the online linear
evaluation of solo-learn (da Costa et al., JMLR 2022: a classifier on ``feats.detach()`` in
``BaseMethod``) and SimCLR's ``lineareval_while_pretraining``; it tracks a run, it does not
replace the offline protocol of ``ssvrl probe`` (L-BFGS on frozen eval-mode features of
several clips per training video), which is the number to report.

Features: :attr:`ObjectiveOutput.features <ssvrl.objectives.base.ObjectiveOutput.features>`
when the objective fills it (every built-in objective; TEG only with global-average-pool
backbones), at no cost. Otherwise (out-of-tree objectives) one extra forward of the anchor
view under ``no_grad`` in eval mode: about a third of one view's forward and backward; batch
norm running statistics are untouched and dropout is off, so those features use running
statistics where the objective's own pass uses the batch's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.augment import VideoAugment
from ssvrl.objectives.base import Objective, ViewSpec

GROUP = "online_probe"  # name of the head's optimizer parameter group


def anchor_view(objective: Objective) -> ViewSpec:
    """The view whose clips are the anchors (rows ``0..B-1`` of the first encoder call)."""
    specs = objective.views()
    name = type(objective).anchor_view or specs[0].name
    return next(s for s in specs if s.name == name)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` and every submodule in eval mode; each one's own mode restored afterwards
    (so a submodule kept in eval on purpose, e.g. a teacher's dropout, stays so)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


class OnlineProbe(nn.Module):
    """A linear head on detached backbone features; see the module docstring.

    Args:
        num_features: ``D`` of the backbone.
        num_classes: classes of the training index.
        anchor: the objective's anchor view (its augmentation gives the eval crop size).
        lr, weight_decay: the head's own, in the pretraining optimizer.
    """

    def __init__(
        self, num_features: int, num_classes: int, anchor: ViewSpec, lr: float, weight_decay: float
    ) -> None:
        super().__init__()
        self.head = nn.Linear(num_features, num_classes)
        self.anchor = anchor.name
        self.eval_augment = VideoAugment(anchor.augment)  # its eval_transform: centre crop
        self.lr, self.weight_decay = lr, weight_decay
        self._counts: torch.Tensor | None = None  # (2,) correct, videos of this val pass

    def param_group(self) -> dict[str, Any]:
        return {
            "params": list(self.head.parameters()),
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "name": GROUP,
        }

    def features(
        self,
        backbone: nn.Module,
        views: dict[str, torch.Tensor],
        given: torch.Tensor | None,
        batch_size: int,
    ) -> torch.Tensor:
        """``(B, D)`` detached float features: the objective's, or an eval-mode forward."""
        if given is None:
            with torch.no_grad(), eval_mode(backbone):
                given = backbone(views[self.anchor])  # (B, D)
        if given.ndim != 2 or given.shape[0] != batch_size:
            raise ValueError(
                f"online probe: features must be (B={batch_size}, D), one row per sample; got "
                f"{tuple(given.shape)} (ObjectiveOutput.features: rows 0..B-1 of the anchors)"
            )
        return given.detach().float()

    def train_terms(
        self, feats: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cross-entropy with grad into the head only, top-1 in % detached)``."""
        logits = self.head(feats)  # (B, num_classes)
        loss = F.cross_entropy(logits, labels)
        top1 = (logits.detach().argmax(dim=1) == labels).float().mean() * 100.0
        return loss, top1

    def reset_counts(self) -> None:
        self._counts = None

    @torch.no_grad()
    def eval_batch(self, backbone: nn.Module, batch: dict[str, Any]) -> None:
        """Classify a batch of ``{"clips": uint8 (B, K, C, T, H, W), "label", "valid"}`` and
        add its correct and valid-video counts to this pass's; unreadable videos not counted."""
        clips = batch["clips"]
        B, K = clips.shape[:2]
        with eval_mode(backbone):
            x = self.eval_augment.eval_transform(clips.flatten(0, 1))  # (B*K, C, T, h, w)
            feats = backbone(x).float().reshape(B, K, -1).mean(dim=1)  # (B, D) clips averaged
        pred = self.head(feats).argmax(dim=1)  # (B,)
        valid = batch["valid"].bool()
        hits = ((pred == batch["label"]) & valid).sum()
        counts = torch.stack([hits, valid.sum()]).long()  # (2,)
        self._counts = counts if self._counts is None else self._counts + counts

    def result(self, all_sum: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, int]:
        """``(top-1 in %, videos counted)`` over every rank; ``all_sum`` sums across ranks and
        must be called on every rank (a rank with no batch contributes zeros)."""
        local = self._counts
        if local is None:
            local = torch.zeros(2, dtype=torch.long, device=self.head.weight.device)
        hits, videos = all_sum(local).tolist()
        return (100.0 * hits / videos if videos else float("nan")), int(videos)
