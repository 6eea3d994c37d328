"""A linear classifier on frozen features, fitted full-batch with L-BFGS.

Features are standardised with the training set's mean and standard deviation before the
linear layer, so encoders whose features differ in scale (a random init versus a trained
one) are compared on equal terms; the L2 penalty is on the weights only. Full-batch L-BFGS
on cached features is deterministic and takes seconds for tens of thousands of clips, in
place of the epochs of SGD through the backbone of online probing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearProbe(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor
    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.fc = nn.Linear(mean.numel(), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x - self.mean) / self.std)  # (N, num_classes)


def fit_linear_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    steps: int = 200,
    weight_decay: float = 1e-4,
    lr: float = 1.0,
) -> LinearProbe:
    """Minimise ``CE(fc(standardise(x)), y) + weight_decay * ||W||^2`` over the whole set.

    Args:
        x: ``(N, D)`` training features; y: ``(N,)`` labels in ``[0, num_classes)``.
        steps: L-BFGS iterations.
    """
    x = x.float()
    std = x.std(dim=0).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones(x.shape[1])
    probe = LinearProbe(x.mean(dim=0), std, num_classes).to(x.device)
    nn.init.zeros_(probe.fc.weight)
    nn.init.zeros_(probe.fc.bias)
    opt = torch.optim.LBFGS(
        probe.fc.parameters(),
        lr=lr,
        max_iter=steps,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), y) + weight_decay * probe.fc.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


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
