"""MLP projection heads (SimCLR, Chen et al. 2020, Sec. 2; CVRL Sec. 4.1 uses a 3-layer MLP)."""

from __future__ import annotations

from torch import nn


def mlp_head(
    in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 3, batch_norm: bool = True
) -> nn.Sequential:
    """``num_layers`` linear layers, BN + ReLU between them, none after the last.

    CVRL: 3 layers, hidden 2048, output 128, with batch norm (the official video_ssl config).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)
