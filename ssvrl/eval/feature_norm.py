"""Normalisations of frozen features before a linear classifier.

- ``standardize``: per-dimension mean and standard deviation of the training features, fixed
  once observed (the scaling step of logistic-regression probes on cached features), so
  encoders whose features differ in scale (random init versus trained) compare on equal terms;
- ``bn``: batch norm without affine parameters, as MAE's linear probe (He et al. 2022,
  App. A.2), with a cumulative average of batch statistics for evaluation;
- ``l2``: unit-length features, as kNN and retrieval see them;
- ``none``: raw features.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NormName = Literal["standardize", "l2", "bn", "none"]


class Standardize(nn.Module):
    """``(x - mean) / std`` with statistics accumulated over every batch passed to ``update``.

    Sums are kept in float64, so one ``update`` with the whole training set (cached features)
    and many minibatch updates (online probing) give the same mean and (population) std.
    """

    count: torch.Tensor
    total: torch.Tensor
    total_sq: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("total", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("total_sq", torch.zeros(dim, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` (N, D) to the statistics."""
        x64 = x.detach().to(torch.float64)
        self.count += x64.shape[0]
        self.total += x64.sum(dim=0)
        self.total_sq += x64.square().sum(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.count == 0:
            raise RuntimeError("Standardize used before any update(): no statistics")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean.square()).clamp_min(0)
        std = var.sqrt().clamp_min(1e-6)
        return (x - mean.to(x.dtype)) / std.to(x.dtype)  # (N, D)


class L2Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


def build_norm(name: NormName, dim: int) -> nn.Module:
    """The named normalisation for ``dim``-dimensional features (see the module docstring)."""
    if name == "standardize":
        return Standardize(dim)
    if name == "bn":
        return nn.BatchNorm1d(dim, affine=False, momentum=None)  # cumulative running stats
    if name == "l2":
        return L2Normalize()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown feature norm {name!r}: standardize, l2, bn or none")
