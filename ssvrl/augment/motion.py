"""Motion maps on the device, shared by FAME and MCL: frame differences and optical-flow magnitude.

FAME (Ding et al., CVPR 2022, Sec. 3.2) seeds its foreground from frame differences; MCL (Li et
al., ICCV 2021, Sec. 3.2) scores time windows and crops by motion magnitude, which it takes from
optical flow. Both maps here are ``(B, 1, T, H, W)`` float32 with one value per input frame, so
they line up with the clip and can be cropped with the clip's own parameters
(:func:`ssvrl.augment.apply_geometry`, the replay).

Flow on disk: the frame-folder layout of mmaction2 / denseflow stores each flow field as two
greyscale JPEGs ``x_00001.jpg`` / ``y_00001.jpg``, each component quantised linearly from
``[-bound, bound]`` to ``[0, 255]`` (``bound`` 20 by default). :func:`flow_from_uint8` undoes the
quantisation; reading the files is the loader's job (loader-agnostic here).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssvrl.augment.ops import rgb_to_gray


def _unit(x: Tensor) -> Tensor:
    """uint8 -> float32 / 255; float kept as float32 / float64."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def frame_difference(x: Tensor) -> Tensor:
    """``|luma_t - luma_(t-1)|`` per pixel: (B, C, T, H, W) -> (B, 1, T, H, W), values in [0, 1].

    C == 3 uses BT.601 luma, any other C the channel mean. Frame 0 has no predecessor and takes
    frame 1's difference (so a clip's motion is not biased low at its start); T == 1 gives zeros.
    """
    if x.dim() != 5:
        raise ValueError(f"expected (B, C, T, H, W), got {tuple(x.shape)}")
    x = _unit(x)
    gray = rgb_to_gray(x) if x.shape[1] == 3 else x.mean(dim=1, keepdim=True)  # (B, 1, T, H, W)
    if gray.shape[2] == 1:
        return torch.zeros_like(gray)
    diff = (gray[:, :, 1:] - gray[:, :, :-1]).abs_()  # (B, 1, T-1, H, W)
    return torch.cat([diff[:, :, :1], diff], dim=2)  # (B, 1, T, H, W)


def flow_from_uint8(x: Tensor, y: Tensor, bound: float = 20.0) -> Tensor:
    """Dequantise JPEG flow: uint8 (T, H, W) x and y components -> float32 (T, 2, H, W) pixels."""
    if x.shape != y.shape or x.dim() != 3:
        raise ValueError(f"x and y must both be (T, H, W), got {tuple(x.shape)}, {tuple(y.shape)}")
    xy = torch.stack([x, y], dim=1).float()  # (T, 2, H, W)
    return xy.mul_(2 * bound / 255).sub_(bound)


def flow_magnitude(flow: Tensor) -> Tensor:
    """Per-pixel flow speed ``sqrt(u^2 + v^2)``: (T, 2, H, W) -> (1, T, H, W).

    Stack the results of a batch (``torch.stack``) to get the (B, 1, T, H, W) motion map.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"expected flow (T, 2, H, W), got {tuple(flow.shape)}")
    if not flow.dtype.is_floating_point:
        raise TypeError(f"flow must be float (dequantise JPEG flow first), got {flow.dtype}")
    flow = flow.float()
    return flow.square().sum(dim=1).sqrt_().unsqueeze(0)  # (1, T, H, W)


def clip_motion(motion: Tensor) -> Tensor:
    """A motion map summed over time: (B, 1, T, H, W) -> (B, H, W)."""
    return motion.sum(dim=(1, 2))
