"""Transformer blocks of the video ViT: joint and divided space-time attention.

Joint attention (ViViT's "spatio-temporal attention", Arnab et al., ICCV 2021, model 1) is a
plain ViT block (Dosovitskiy et al., ICLR 2021) over all ``1 + T N`` tokens. Divided attention
(TimeSformer, Bertasius et al., ICML 2021, Sec. 3 "Divided Space-Time Attention", Fig. 1) first
attends over time (each patch position with itself in the other frames), then over space (each
frame's patches plus the CLS token), then the MLP. The CLS token takes part in every frame's
spatial attention; its update is the mean of the per-frame updates, as TimeSformer does.

The temporal branch's output projection ``temporal_fc`` starts at zero (TimeSformer's init), so
a block loaded from a 2D ViT is, before training, exactly the 2D block applied per frame
(see :mod:`ssvrl.backbones.vit_inflate`). Attention is PyTorch's
:func:`~torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient kernels on
GPU). Parameter names follow timm's ``Block`` (``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``) so that 2D checkpoints map one to one.

Token layout everywhere: ``x`` is ``(B, 1 + T*N, D)``, the CLS token first, then the patch
tokens time-major (token ``1 + t*N + n`` is patch ``n`` of time step ``t``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

AttentionKind = Literal["divided", "joint"]


class Attention(nn.Module):
    """Multi-head self-attention on SDPA; ``(N, L, D) -> (N, L, D)``."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, L, D = x.shape
        qkv = self.qkv(x).view(N, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (N, heads, L, D/heads)
        return self.proj(out.transpose(1, 2).reshape(N, L, D))


class Block(nn.Module):
    """One transformer block with joint or divided space-time attention (module docstring)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        attention: AttentionKind = "divided",
        drop_path: float = 0.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if attention not in ("divided", "joint"):
            raise ValueError(f"attention must be 'divided' or 'joint', got {attention!r}")
        self.attention = attention
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if attention == "divided":
            self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.temporal_attn = Attention(dim, heads, qkv_bias)
            self.temporal_fc = nn.Linear(dim, dim)
            nn.init.zeros_(self.temporal_fc.weight)  # TimeSformer: the block starts spatial-only
            nn.init.zeros_(self.temporal_fc.bias)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``x`` (B, 1 + T*N, D) with ``T = frames`` -> same shape."""
        if self.attention == "joint":
            x = x + self.drop_path(self.attn(self.norm1(x)))
        else:
            x = self._divided(x, frames)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _divided(self, x: torch.Tensor, T: int) -> torch.Tensor:
        B, L, D = x.shape
        N = (L - 1) // T
        cls, patches = x[:, :1], x[:, 1:]  # (B, 1, D), (B, T*N, D)
        # Time: each patch position attends to itself across the T steps.
        xt = patches.reshape(B, T, N, D).transpose(1, 2).reshape(B * N, T, D)
        xt = xt + self.drop_path(self.temporal_fc(self.temporal_attn(self.temporal_norm1(xt))))
        patches = xt.reshape(B, N, T, D).transpose(1, 2).reshape(B, T * N, D)
        # Space: each frame's patches and (a copy of) the CLS token attend to each other.
        xs = torch.cat(
            [cls.expand(B, T, D).reshape(B * T, 1, D), patches.reshape(B * T, N, D)], dim=1
        )  # (B*T, 1+N, D)
        res = self.attn(self.norm1(xs))  # (B*T, 1+N, D)
        res_cls = res[:, 0].reshape(B, T, D).mean(dim=1, keepdim=True)  # (B, 1, D)
        res_patches = res[:, 1:].reshape(B, T * N, D)
        return torch.cat([cls, patches], dim=1) + self.drop_path(
            torch.cat([res_cls, res_patches], dim=1)
        )
