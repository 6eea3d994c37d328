"""A linear classifier on frozen features: full-batch L-BFGS or minibatch SGD.

The objective is ``CE(fc(norm(x)), y) + weight_decay * ||W||^2`` (no penalty on the bias),
whatever the optimiser. L-BFGS on cached features is deterministic and takes seconds for tens
of thousands of clips, in place of the epochs of SGD through the backbone of online probing
(CVRL's linear evaluation, Qian et al. 2021, trains by SGD; the L-BFGS variant is the
L2-regularised logistic regression of SimCLR's transfer experiments and of CLIP's linear probe).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.eval.feature_norm import NormName, Standardize, build_norm

Classifier = Literal["lbfgs", "sgd"]


class LinearHead(nn.Module):
    """``fc(norm(x))``: a feature normalisation (:mod:`ssvrl.eval.feature_norm`) then a linear
    layer, initialised at zero (the first step starts from uniform class probabilities)."""

    def __init__(self, dim: int, num_classes: int, norm: NormName = "standardize") -> None:
        super().__init__()
        self.norm = build_norm(norm, dim)
        self.fc = nn.Linear(dim, num_classes)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def observe(self, x: torch.Tensor) -> None:
        """Add training features ``x`` (N, D) to the standardisation statistics (if any)."""
        if isinstance(self.norm, Standardize):
            self.norm.update(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))  # (N, num_classes)

    def loss(self, x: torch.Tensor, y: torch.Tensor, weight_decay: float) -> torch.Tensor:
        return F.cross_entropy(self(x), y) + weight_decay * self.fc.weight.pow(2).sum()


def _fit_lbfgs(head: LinearHead, x: torch.Tensor, y: torch.Tensor, steps: int, wd: float) -> None:
    opt = torch.optim.LBFGS(
        head.fc.parameters(),
        lr=1.0,
        max_iter=steps,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = head.loss(x, y, wd)
        loss.backward()
        return loss

    opt.step(closure)


def sgd_optimizer(head: LinearHead, lr: float, total_steps: int) -> tuple[
    torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR
]:
    """SGD with momentum 0.9 and a cosine decay of ``lr`` to zero over ``total_steps``."""
    opt = torch.optim.SGD(head.fc.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    )
    return opt, sched


def _fit_sgd(
    head: LinearHead,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    wd: float,
    lr: float,
    batch_size: int,
    seed: int,
) -> None:
    N = x.shape[0]
    per_epoch = math.ceil(N / batch_size)
    opt, sched = sgd_optimizer(head, lr, epochs * per_epoch)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(N, generator=g).to(x.device)
        for i in range(per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]  # (b,)
            opt.zero_grad()
            head.loss(x[idx], y[idx], wd).backward()
            opt.step()
            sched.step()


def fit_linear_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    steps: int = 200,
    weight_decay: float = 1e-4,
    classifier: Classifier = "lbfgs",
    norm: NormName = "standardize",
    lr: float = 0.1,
    batch_size: int = 256,
    seed: int = 0,
) -> LinearHead:
    """Fit a :class:`LinearHead` on ``x`` (N, D) with labels ``y`` (N,) in ``[0, num_classes)``.

    Args:
        steps: L-BFGS iterations, or SGD epochs over ``x``.
        lr, batch_size, seed: SGD only (L-BFGS uses a strong-Wolfe line search from step 1).
    Returns:
        The head in eval mode (batch norm then uses its accumulated statistics).
    """
    x = x.float()
    head = LinearHead(x.shape[1], num_classes, norm).to(x.device).train()
    head.observe(x)
    if classifier == "lbfgs":
        _fit_lbfgs(head, x, y, steps, weight_decay)
    elif classifier == "sgd":
        _fit_sgd(head, x, y, steps, weight_decay, lr, batch_size, seed)
    else:
        raise ValueError(f"unknown classifier {classifier!r}: lbfgs or sgd")
    return head.eval()


def topk_accuracy(
    logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...] = (1, 5)
) -> dict[str, float]:
    """``{"top1": %, "top5": %}``; k larger than the number of classes counts every class."""
    out = {}
    for k in ks:
        kk = min(k, logits.shape[1])
        hit = (logits.topk(kk, dim=1).indices == y[:, None]).any(dim=1)
        out[f"top{k}"] = 100.0 * hit.float().mean().item()
    return out
