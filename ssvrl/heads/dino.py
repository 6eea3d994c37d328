"""DINO's projection head (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021, Sec. 3.1 "Network architecture" and Appendix).

A 3-layer MLP (hidden 2048, GELU, by default no batch norm) to a bottleneck of 256, l2
normalisation, then a weight-normalised linear layer (Salimans & Kingma, NeurIPS 2016) without
bias to ``K`` outputs (65536 by default). The weight norm of the last layer is fixed to 1 (DINO's
``norm_last_layer=True``, which the paper reports as the stable choice); with
``norm_last_layer=False`` each output's norm ``g`` is learnt, starting at 1.

``use_bn=True`` puts ``BatchNorm1d`` after each hidden linear layer, before its GELU (not after
the bottleneck layer), as DINO's official code does with ``--use_bn_in_head`` (its
``DINOHead(use_bn=True)``). DINO Sec. 3.1 keeps ViTs "entirely BN-free", heads included, so the
default is off; convnet encoders may want it (see :mod:`ssvrl.objectives.svt`).

Here the weight normalisation is written out (``W = g * v / ||v||`` per output row) rather than
through ``torch.nn.utils.weight_norm``: the same function, plain parameters (``v`` 2-D, decayed
by the engine's optimizer like DINO's ``weight_v``; ``g`` 1-D, not decayed), and a module that
deep-copies cleanly into the EMA teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """``x @ (g * v / ||v||).T`` with ``v`` (out, in) and ``g`` (out,) or fixed at 1."""

    def __init__(self, in_dim: int, out_dim: int, learn_norm: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.Linear(in_dim, out_dim, bias=False).weight.detach())
        self.norm = nn.Parameter(torch.ones(out_dim)) if learn_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.weight, dim=1)  # (out, in), unit rows
        if self.norm is not None:
            w = w * self.norm[:, None]
        return F.linear(x, w)


class DINOHead(nn.Module):
    """``(N, in_dim) -> (N, out_dim)`` logits: MLP (with ``use_bn``: batch norm after each hidden
    linear layer), l2 norm, weight-normalised last layer."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)  # (N, bottleneck), unit rows
        return self.last_layer(z)  # (N, out_dim)
