"""A video Vision Transformer for views of any size and length (SVT's backbone).

SVT (Ranasinghe et al., CVPR 2022, Sec. 3.2 "Dynamic positional embedding") runs ONE
TimeSformer (Bertasius et al., ICML 2021) on global and local views that differ in spatial size
and in number of frames; the positional embeddings are interpolated to each view's token grid.
Here:

- patch embedding: a ``Conv3d`` with kernel = stride = ``(tubelet, patch, patch)``; tubelet 1
  is TimeSformer's per-frame embedding, tubelet 2 ViViT's tubelets (Arnab et al., ICCV 2021,
  Sec. 3.2). A clip whose length is not a multiple of the tubelet is padded by repeating its
  last frame (every frame is seen); a spatial remainder below one patch is dropped.
- positional embeddings: ``pos_embed`` (1, 1 + Gh*Gw, D) holds the CLS position and a spatial
  grid (timm's layout, so 2D checkpoints load as they are), ``time_embed`` (1, Tg, D) one
  vector per time step. For a view with ``T'`` steps and a ``h x w`` grid the spatial grid is
  resized bicubically and the temporal one linearly (both only when the size differs); patch
  ``(t, i, j)`` gets ``spatial[i, j] + temporal[t]``.
- attention: divided space-time (TimeSformer) or joint, :mod:`ssvrl.backbones.vit_blocks`.
- outputs: :meth:`forward` the final-normed CLS token ``(B, D)``; :meth:`forward_features` the
  normed patch tokens as a map ``(B, D, T', H', W')``; :meth:`forward_temporal` that map
  averaged over space. Unlike the CNNs, the mean over time of ``forward_temporal`` is NOT
  ``forward`` (which is the CLS token).

Sizes (DeiT/ViT widths; ``micro`` is a CPU-sized model for the quickstart): ``vit_micro``
(96 wide, 4 blocks, 3 heads, patch 8, tubelet 2), ``vit_tiny`` (192, 12, 3), ``vit_small``
(384, 12, 6), ``vit_base`` (768, 12, 12), the last three patch 16 and per-frame (tubelet 1),
8 time steps and a 14 x 14 grid in their embeddings (TimeSformer 8 x 224).

A 2D ViT checkpoint (timm ImageNet or DINO weights a user downloaded) is recognised and inflated
when loaded: ``backbone.weights: /path/vit_small_dino.pth`` (see
:mod:`ssvrl.backbones.vit_inflate`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.backbones.base import BACKBONES, VideoBackbone
from ssvrl.backbones.vit_blocks import AttentionKind, Block
from ssvrl.backbones.vit_inflate import Inflate, inflate_state_dict, is_2d_vit_state_dict


class VideoViT(VideoBackbone):
    """The video ViT of the module docstring; ``(B, 3, T, H, W) -> (B, D)``."""

    def __init__(
        self,
        embed_dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        patch_size: int = 16,
        tubelet: int = 1,
        num_frames: int = 8,
        img_size: int = 224,
        attention: AttentionKind = "divided",
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        inflate: Inflate = "average",
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if tubelet < 1 or patch_size < 1 or num_frames < tubelet:
            raise ValueError(
                f"invalid geometry: patch {patch_size}, tubelet {tubelet}, frames {num_frames}"
            )
        self.num_features = self.embed_dim = embed_dim
        self.patch_size, self.tubelet, self.inflate = patch_size, tubelet, inflate
        self.attention: AttentionKind = attention
        grid = img_size // patch_size
        self.patch_embed = _PatchEmbed(in_chans, embed_dim, tubelet, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames // tubelet, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth, linear
        self.blocks = nn.ModuleList(
            Block(embed_dim, heads, mlp_ratio, attention, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()
        self._register_load_state_dict_pre_hook(self._maybe_inflate)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.time_embed, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.endswith("temporal_fc"):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ positional embeddings
    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Tokens ``(T', h, w)`` of a ``frames x height x width`` clip."""
        T = math.ceil(frames / self.tubelet)
        h, w = height // self.patch_size, width // self.patch_size
        if h < 1 or w < 1:
            raise ValueError(f"{height}x{width} px is smaller than one {self.patch_size} px patch")
        return T, h, w

    def position(self, T: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cls (1, 1, D), patches (1, T*h*w, D))`` positional embeddings for a token grid."""
        D = self.embed_dim
        cls_pos, spatial = self.pos_embed[:, :1], self.pos_embed[:, 1:]  # (1,1,D), (1,G*G,D)
        G = math.isqrt(spatial.shape[1])
        spatial = spatial.reshape(1, G, G, D)
        if (h, w) != (G, G):
            grid = spatial.permute(0, 3, 1, 2)  # (1, D, G, G)
            spatial = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
            spatial = spatial.permute(0, 2, 3, 1)  # (1, h, w, D)
        temporal: torch.Tensor = self.time_embed  # (1, Tg, D)
        if T != temporal.shape[1]:
            temporal = F.interpolate(
                temporal.transpose(1, 2), size=T, mode="linear", align_corners=False
            ).transpose(1, 2)  # (1, T, D)
        pos = spatial.reshape(1, 1, h * w, D) + temporal.reshape(1, T, 1, D)  # (1, T, h*w, D)
        return cls_pos, pos.reshape(1, T * h * w, D)

    # ---------------------------------------------------------------------------- forward
    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """``(B, C, T, H, W)`` -> final-normed tokens ``(B, 1 + T'*h*w, D)`` and ``(T', h, w)``."""
        B, _, frames, H, W = x.shape
        T, h, w = self.grid(frames, H, W)
        if frames % self.tubelet:  # repeat the last frame up to a whole tubelet
            pad = x[:, :, -1:].expand(-1, -1, T * self.tubelet - frames, -1, -1)
            x = torch.cat([x, pad], dim=2)
        patches = self.patch_embed(x[..., : h * self.patch_size, : w * self.patch_size])
        cls_pos, pos = self.position(T, h, w)  # (1, 1, D), (1, T*h*w, D)
        cls = (self.cls_token + cls_pos).expand(B, -1, -1)  # (B, 1, D)
        z = torch.cat([cls, patches + pos], dim=1)  # (B, 1 + T*h*w, D)
        for block in self.blocks:
            z = block(z, T)
        return self.norm(z), (T, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> the CLS token ``(B, D)``."""
        return self.tokens(x)[0][:, 0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> patch tokens as a map ``(B, D, T', h, w)``."""
        z, (T, h, w) = self.tokens(x)
        B, _, D = z.shape
        return z[:, 1:].reshape(B, T, h, w, D).permute(0, 4, 1, 2, 3)

    def temporal_size(self, frames: int) -> int:
        return math.ceil(frames / self.tubelet)

    @property
    def temporal_stride(self) -> int:
        return self.tubelet

    def temporal_centres(self, frames: int) -> np.ndarray:
        t = self.tubelet
        return (t - 1) / 2 + t * np.arange(self.temporal_size(frames), dtype=np.float64)

    # -------------------------------------------------------------------- 2D checkpoints
    def _maybe_inflate(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load-time hook: a 2D ViT state dict under ``prefix`` is inflated in place."""
        own = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not is_2d_vit_state_dict(own):
            return
        for key in own:
            del state_dict[prefix + key]
        video = inflate_state_dict(own, self, self.inflate)
        state_dict.update({prefix + k: v for k, v in video.items()})


class _PatchEmbed(nn.Module):
    """``(B, C, T, H, W) -> (B, T'*h*w, D)`` tokens, time-major."""

    def __init__(self, in_chans: int, dim: int, tubelet: int, patch: int) -> None:
        super().__init__()
        kernel = (tubelet, patch, patch)
        self.proj = nn.Conv3d(in_chans, dim, kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, T', h, w) -> (B, T'*h*w, D)


_SIZES: dict[str, dict[str, Any]] = {
    "vit_micro": dict(embed_dim=96, depth=4, heads=3, patch_size=8, tubelet=2, img_size=64),
    "vit_tiny": dict(embed_dim=192, depth=12, heads=3),
    "vit_small": dict(embed_dim=384, depth=12, heads=6),
    "vit_base": dict(embed_dim=768, depth=12, heads=12),
}


def _register(name: str, defaults: dict[str, Any]) -> type[VideoViT]:
    """A registered subclass whose constructor defaults are ``defaults`` (all overridable)."""

    def __init__(self: VideoViT, **kwargs: Any) -> None:
        VideoViT.__init__(self, **{**defaults, **kwargs})

    cls = type(name.upper(), (VideoViT,), {"__init__": __init__})
    cls.__doc__ = f"``{name}``: :class:`VideoViT` with {defaults}."
    BACKBONES.register(name)(cls)
    return cls


VIT_MICRO, VIT_TINY, VIT_SMALL, VIT_BASE = (_register(n, d) for n, d in _SIZES.items())
