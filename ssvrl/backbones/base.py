"""The backbone contract and its registry.

Every encoder maps clips ``(B, C, T, H, W)`` to pooled features ``(B, D)`` with ``D =
num_features``, and exposes the unpooled map ``(B, D, T', H', W')`` through
``forward_features`` for objectives that need time (TEG) or space (MCL saliency).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ssvrl.registry import Registry

BACKBONES: Registry[type[VideoBackbone]] = Registry("backbone")


class VideoBackbone(nn.Module):
    """Base class: subclasses set ``num_features`` and implement ``forward_features``."""

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, D, T', H', W')``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, D)``: global average pool of the feature map."""
        return self.forward_features(x).mean(dim=(2, 3, 4))  # (B, D)


def build_backbone(name: str, weights: str | None = None, **kwargs: object) -> VideoBackbone:
    """Instantiate a registered backbone; ``weights`` is a local state-dict file (safe load)."""
    model = BACKBONES.get(name)(**kwargs)
    if weights:
        load_weights(model, Path(weights))
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a state dict from ``.safetensors`` or a torch file with ``weights_only=True``.

    Keys under ``backbone.`` (an ssvrl checkpoint) are taken and stripped; a Lightning
    checkpoint's ``state_dict`` entry is unwrapped. Missing or unexpected keys raise.
    """
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path}: weights do not fit the backbone: {err}") from err
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit the backbone: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
