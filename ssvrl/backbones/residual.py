"""Residual-frame input: any backbone fed frame differences instead of RGB frames.

Residual frames (Tao et al., "Rethinking Motion Representation: Residual Frames with 3D
ConvNets", IEEE TIP 2021, Sec. III-A; used for self-supervised video learning in Tao et al.,
"Self-supervised Video Representation Learning Using Inter-intra Contrastive Framework", ACM MM
2020, Sec. 3.3) are ``R_t = F_{t+1} - F_t``: a static background cancels, moving edges remain.
A 3D CNN's random features of such input already follow motion, which is what lets an objective
without negatives (SVT / DINO) bootstrap from them on ssvrl's motion-only synthetic data (see
the README's ``svt`` row).

Here the clip keeps its ``T`` frames: the ``T - 1`` differences plus the last one repeated, so
a view's frame count, the backbone's temporal geometry (TEG) and a ViT's positional embeddings
are those of the RGB clip. Select it with ``backbone.input: residual``; every entry point that
builds the encoder (training, probe, extract, finetune, ``ssvrl export`` / ``load_backbone``)
goes through :func:`~ssvrl.backbones.base.build_backbone`, so train and test see the same input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ssvrl.backbones.base import VideoBackbone

INPUTS = ("rgb", "residual")
"""What a backbone is fed: the frames themselves or their differences (``backbone.input``)."""


def residual_frames(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C, T, H, W)``: ``x[t+1] - x[t]``, the last difference
    repeated at ``t = T - 1``. A single frame has no difference: its residual is zero."""
    if x.shape[2] < 2:
        return torch.zeros_like(x)
    d = x[:, :, 1:] - x[:, :, :-1]  # (B, C, T-1, H, W)
    return torch.cat([d, d[:, :, -1:]], dim=2)  # (B, C, T, H, W)


class ResidualInput(VideoBackbone):
    """Wraps a backbone ``net``: every entry point (``forward``, ``forward_features``,
    ``forward_temporal``) sees :func:`residual_frames` of its input.

    Its weights are ``net``'s, under ``net.``; :meth:`load_state_dict` also takes a state dict
    of the bare backbone (no ``net.`` keys), so RGB-trained or inflated weights can start it.
    """

    def __init__(self, net: VideoBackbone) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.num_features
        self.temporal_layers = net.temporal_layers  # type: ignore[misc]  # same T and geometry

    def __getattr__(self, name: str) -> Any:
        """Attributes the wrapper lacks come from ``net`` (e.g. ``stages`` for MCL's saliency
        layer, ``patch_size`` of a ViT), so the wrapper is transparent to code that inspects
        the encoder."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "net":  # not registered yet (inside __init__): no recursion
                raise
            return getattr(self.net, name)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(residual_frames(x))

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_temporal(residual_frames(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(residual_frames(x))  # the backbone's own pooling (e.g. a ViT's)

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        if state_dict and not any(k.startswith("net.") for k in state_dict):
            state_dict = {f"net.{k}": v for k, v in state_dict.items()}  # a bare backbone's
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
