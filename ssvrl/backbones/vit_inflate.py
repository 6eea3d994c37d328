"""2D ViT checkpoints (timm ImageNet, DINO) -> :class:`~ssvrl.backbones.vit.VideoViT` weights.

SVT initialises its video transformer from image weights (Ranasinghe et al., CVPR 2022, Sec. 4,
following TimeSformer, Bertasius et al., ICML 2021, Sec. 4.1 "ImageNet pretraining"). The
mapping, for a state dict with timm's key names (DINO's releases use the same):

- ``patch_embed.proj.weight`` ``(D, C, p, p)`` -> ``(D, C, t, p, p)``: ``average`` puts ``w / t``
  at every one of the ``t`` tubelet frames (I3D's inflation, Carreira & Zisserman, CVPR 2017,
  Sec. 2.5: a static clip gives the 2D activations), ``centre`` puts ``w`` at frame ``t // 2``
  and zeros elsewhere; with ``t = 1`` both are the 2D kernel;
- ``pos_embed``: CLS position kept, the spatial grid resized bicubically when the model's grid
  differs; extra prefix tokens (DeiT's distillation token) dropped;
- blocks: ``norm1``, ``attn``, ``norm2``, ``mlp`` one to one; divided attention's temporal
  branch starts as a copy of the spatial attention (``temporal_norm1``, ``temporal_attn``) with
  ``temporal_fc`` at zero, and ``time_embed`` at zero, as TimeSformer's initialisation: on a
  1-frame clip (or a static clip with ``average``) the video model computes the 2D model's CLS;
- the classifier (``head``, ``head_dist``, ``fc_norm``) is dropped.

Files are read by :func:`ssvrl.backbones.load_weights` (``safetensors`` or ``torch.load(...,
weights_only=True)``), which calls ``load_state_dict``; the model's load hook recognises a 2D
state dict (4-D patch kernel) and converts it, so ``backbone.weights: vit_s16_dino.pth`` works.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ssvrl.backbones.vit import VideoViT

Inflate = Literal["average", "centre"]
_DROPPED = ("head.", "head_dist.", "fc_norm.", "dist_token")


def is_2d_vit_state_dict(state: dict[str, torch.Tensor]) -> bool:
    """True for an image ViT's state dict (a 4-D ``patch_embed.proj.weight``)."""
    w = state.get("patch_embed.proj.weight")
    return isinstance(w, torch.Tensor) and w.ndim == 4


def inflate_patch_kernel(w: torch.Tensor, tubelet: int, mode: Inflate) -> torch.Tensor:
    """``(D, C, p, p)`` -> ``(D, C, tubelet, p, p)`` (module docstring)."""
    if mode == "average":
        return w.unsqueeze(2).repeat(1, 1, tubelet, 1, 1) / tubelet
    if mode == "centre":
        out = w.new_zeros(*w.shape[:2], tubelet, *w.shape[2:])
        out[:, :, tubelet // 2] = w
        return out
    raise ValueError(f"inflate must be 'average' or 'centre', got {mode!r}")


def resize_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """``(1, P + G*G, D)`` (``P`` prefix tokens) -> ``(1, 1 + grid*grid, D)``: CLS + grid."""
    D = pos.shape[-1]
    prefix = pos.shape[1] - math.isqrt(pos.shape[1] - 1) ** 2  # 1 (CLS) or 2 (CLS + dist)
    G = math.isqrt(pos.shape[1] - prefix)
    if G * G + prefix != pos.shape[1]:
        raise ValueError(f"pos_embed of {pos.shape[1]} tokens is not prefix + square grid")
    cls_pos, spatial = pos[:, :1], pos[:, prefix:]  # (1, 1, D), (1, G*G, D)
    if G != grid:
        maps = spatial.reshape(1, G, G, D).permute(0, 3, 1, 2)  # (1, D, G, G)
        maps = F.interpolate(maps.float(), size=(grid, grid), mode="bicubic", align_corners=False)
        spatial = maps.permute(0, 2, 3, 1).reshape(1, grid * grid, D).to(pos.dtype)
    return torch.cat([cls_pos, spatial], dim=1)


def inflate_state_dict(
    state: dict[str, torch.Tensor], model: VideoViT, mode: Inflate = "average"
) -> dict[str, torch.Tensor]:
    """A 2D ViT state dict -> a state dict for ``model`` (module docstring)."""
    own = model.state_dict()
    out = {k: v for k, v in state.items() if not k.startswith(_DROPPED)}
    w = out["patch_embed.proj.weight"]
    expected = own["patch_embed.proj.weight"].shape
    if w.shape[0] != expected[0] or w.shape[-1] != expected[-1]:
        raise ValueError(
            f"2D checkpoint has width {w.shape[0]} and patch {w.shape[-1]}; the model has "
            f"width {expected[0]} and patch {expected[-1]}"
        )
    out["patch_embed.proj.weight"] = inflate_patch_kernel(w, model.tubelet, mode)
    grid = math.isqrt(own["pos_embed"].shape[1] - 1)
    out["pos_embed"] = resize_pos_embed(out["pos_embed"], grid)
    out["time_embed"] = torch.zeros_like(own["time_embed"])
    if model.attention == "divided":
        for i in range(len(model.blocks)):
            b = f"blocks.{i}."
            for part in ("weight", "bias"):
                out[b + "temporal_norm1." + part] = out[b + "norm1." + part].clone()
                out[b + "temporal_attn.qkv." + part] = out[b + "attn.qkv." + part].clone()
                out[b + "temporal_attn.proj." + part] = out[b + "attn.proj." + part].clone()
                out[b + "temporal_fc." + part] = torch.zeros_like(own[b + "temporal_fc." + part])
    return out
