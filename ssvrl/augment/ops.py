"""Pure, batched, frame-consistent video augmentation ops on (B, C, T, H, W) tensors.

Every op applies one per-clip transform to all frames of the clip, as required by CVRL
(Qian et al., CVPR 2021), Sec. 3.3 "temporally consistent spatial augmentation"; the colour
recipe (random-order colour jitter, grayscale, Gaussian blur) is SimCLR's (Chen et al., ICML
2020, Appendix A), solarisation BYOL's (Grill et al., NeurIPS 2020, Appendix B).

Conventions: values in [0, 1]; per-clip factors are (B,) tensors on any device (moved to the
input's device here); float64 is computed in float64, every other dtype in float32 (float16 /
bfloat16 inputs come back as float32). No loop over clips or frames: geometry is one
``grid_sample`` with T folded into channels, colour ops broadcast factors as (B, 1, 1, 1, 1).

Host-to-device copies (per-clip factors, crop maps, indices, constants) use ``non_blocking``:
a blocking copy to a CUDA device synchronises the stream each time, while CUDA stages a
non-blocking copy from pageable host memory at once, so the source may be freed (PyTorch's
"good usage of non_blocking and pin_memory()" tutorial: safe from CPU to GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ssvrl.augment.params import ClipParams

if TYPE_CHECKING:
    from ssvrl.augment.recipe import AugmentConfig

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights (torchvision uses 0.2989 for red)


def _work(x: Tensor) -> Tensor:
    """``x`` in its compute dtype: float32 / float64 kept, anything else cast to float32."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _per_clip(v: Tensor, x: Tensor) -> Tensor:
    """(B,) per-clip values -> (B, 1, 1, 1, 1) on x's device and dtype, for broadcasting."""
    return v.to(device=x.device, dtype=x.dtype, non_blocking=True).view(-1, 1, 1, 1, 1)


def crop_theta(crop: Tensor, flip: Tensor) -> Tensor:
    """(B, 2, 3) affine maps from output to input normalised coords for ``F.affine_grid``.

    A box (y0, x0, h, w) in fractions maps output x in [-1, 1] to input 2*x0 + w - 1 + w*x;
    a horizontal flip negates the x scale (mirror about the box centre).
    """
    y0, x0, h, w = crop.double().unbind(dim=1)  # (B,) each
    sx = torch.where(flip.to(crop.device), -w, w)
    zero = torch.zeros_like(w)
    rows = [torch.stack([sx, zero, 2 * x0 + w - 1], 1), torch.stack([zero, h, 2 * y0 + h - 1], 1)]
    return torch.stack(rows, dim=1)  # (B, 2, 3)


def apply_geometry(x: Tensor, params: ClipParams, size: int, mode: str = "bilinear") -> Tensor:
    """Crop + resize to ``size`` x ``size`` + flip in ONE ``grid_sample``, any C (masks too).

    (B, C, T, H, W) -> (B, C, T, size, size). Frames share the sampling grid by construction.
    Border padding (edge pixels repeat, as interpolate's clamping); no antialiasing, so crops
    shrunk by more than ~2x alias a little. Use ``mode="nearest"`` to replay on label masks.
    """
    x = _work(x)
    B, C, T, H, W = x.shape
    theta = crop_theta(params.crop, params.flip).to(x.device, x.dtype, non_blocking=True)
    grid = F.affine_grid(theta, [B, C * T, size, size], align_corners=False)  # (B, S, S, 2)
    folded = x.reshape(B, C * T, H, W)  # (B, C*T, H, W)
    out = F.grid_sample(folded, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.view(B, C, T, size, size)  # (B, C, T, S, S)


def _fresh(x: Tensor) -> Tensor:
    """A copy of ``x`` in its compute dtype that the in-place cores may overwrite."""
    return x.to(dtype=_work(x).dtype, copy=True)


def _luma(x: Tensor) -> Tensor:
    """The (3,) luma weights on x's device and dtype."""
    return torch.tensor(LUMA, dtype=x.dtype).to(x.device, non_blocking=True)


def rgb_to_gray(x: Tensor) -> Tensor:
    """Luma (B, 3, T, H, W) -> (B, 1, T, H, W)."""
    r, g, b = x.split(1, dim=1)
    return (r * LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2])


def _gray_(x: Tensor) -> Tensor:
    """In place: every channel replaced by the luma."""
    return x.copy_(rgb_to_gray(x).expand_as(x))


def _blend_(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """In place: f * x + (1 - f) * other, clamped to [0, 1] (torchvision's blend); eats other."""
    f = _per_clip(factor, x)
    return x.mul_(f).add_(other.mul_(1 - f)).clamp_(0, 1)


def _brightness_(x: Tensor, factor: Tensor) -> Tensor:
    """In place: x * factor per clip, clamped."""
    return x.mul_(_per_clip(factor, x)).clamp_(0, 1)


def _contrast_(x: Tensor, factor: Tensor) -> Tensor:
    """In place: blend towards the mean grey of the whole CLIP (torchvision: of each image).

    A per-clip pivot makes contrast one affine colour map shared by all frames, like the other
    colour ops; a per-frame pivot would move with fades or lighting changes and flicker.
    The mean grey is the luma of the per-channel means (luma is linear): no grey image needed.
    """
    mean = (x.mean(dim=(2, 3, 4)) * _luma(x)).sum(dim=1)  # (B,)
    return _blend_(x, mean.view(-1, 1, 1, 1, 1), factor)


def _saturation_(x: Tensor, factor: Tensor) -> Tensor:
    """In place: blend each pixel towards its own grey."""
    return _blend_(x, rgb_to_gray(x), factor)


def _hue_(x: Tensor, shift: Tensor) -> Tensor:
    """In place: rotate the HSV hue by ``shift`` turns per clip (torchvision's adjust_hue).

    Hue in sixths h6 = (g - b) / d, (b - r) / d + 2 or (r - g) / d + 4 for max channel r, g, b
    (d = max - min); HSV -> RGB keeping value and saturation is, per channel n = 5, 3, 1 for
    R, G, B: min + d * clip(|k - 2| - 1, 0, 1) with k = (n + h6) mod 6.
    """
    r, g, b = x.split(1, dim=1)  # (B, 1, T, H, W) views
    value, low = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    delta = value - low
    in_gb = torch.where(g == value, (b - r).add_(delta, alpha=2), (r - g).add_(delta, alpha=4))
    h6 = torch.where(r == value, g - b, in_gb).div_(delta).nan_to_num_(0.0)  # grey: 0/0 -> 0
    h6.add_(_per_clip(shift, x), alpha=6)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype).to(x.device, non_blocking=True)
    n = n.view(1, 3, 1, 1, 1)
    k = torch.add(n, h6).remainder_(6.0)  # (B, 3, T, H, W)
    weight = k.sub_(2.0).abs_().sub_(1.0).clamp_(0, 1)
    return torch.addcmul(low, delta, weight, out=x).clamp_(0, 1)


def to_grayscale(x: Tensor) -> Tensor:
    """Luma repeated to 3 channels (B, 3, T, H, W)."""
    return _gray_(_fresh(x))


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """x * factor per clip, clamped to [0, 1]."""
    return _brightness_(_fresh(x), factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend towards the clip's mean grey by ``factor`` per clip (see ``_contrast_``)."""
    return _contrast_(_fresh(x), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each pixel towards its grey by ``factor`` per clip."""
    return _saturation_(_fresh(x), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` turns per clip, in [-0.5, 0.5]."""
    return _hue_(_fresh(x), shift)


def blur_radius(sigma: Tensor, height: int, width: int) -> Tensor:
    """Per-clip kernel radius ceil(3 sigma), capped at min(H, W) - 1 (reflect padding limit)."""
    return torch.ceil(3 * sigma.double()).clamp(0, min(height, width) - 1).long()


def gaussian_kernels(sigma: Tensor, height: int, width: int) -> Tensor:
    """(B, 2R+1) normalised 1-D kernels, R the largest radius; sigma 0 gives a delta.

    Taps beyond a clip's own radius are zero, so its kernel does not depend on the batch.
    """
    radius = blur_radius(sigma, height, width)  # (B,)
    big_r = int(radius.max()) if radius.numel() else 0
    pos = torch.arange(-big_r, big_r + 1, device=sigma.device, dtype=torch.float64)  # (K,)
    s = sigma.double().clamp_min(1e-12).unsqueeze(1)  # (B, 1)
    k = torch.exp(-0.5 * (pos / s) ** 2) * (pos.abs() <= radius.unsqueeze(1))  # (B, K)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-clip ``sigma`` (B,), reflect padding (torchvision's).

    Kernel size 2*ceil(3 sigma) + 1 (e.g. 13 taps at sigma = 2), see ``gaussian_kernels``.
    """
    B, C, T, H, W = x.shape
    kernels = gaussian_kernels(sigma, H, W).to(x.device, x.dtype, non_blocking=True)  # (B, K)
    r = (kernels.shape[1] - 1) // 2
    if r == 0:
        return x.clone()
    weight = kernels.repeat_interleave(C * T, dim=0)  # (B*C*T, K)
    padded = F.pad(x.reshape(B, C * T, H, W), (r, r, r, r), mode="reflect")  # (B, C*T, H', W')
    planes = padded.view(1, B * C * T, H + 2 * r, W + 2 * r)  # one group per frame-channel
    planes = F.conv2d(planes, weight.view(B * C * T, 1, 1, -1), groups=B * C * T)  # along W
    planes = F.conv2d(planes, weight.view(B * C * T, 1, -1, 1), groups=B * C * T)  # along H
    return planes.view(B, C, T, H, W)


def solarize(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Invert pixels >= threshold: x if x < threshold else 1 - x."""
    return torch.where(x < threshold, x, 1 - x)


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(x - mean) / std with per-channel (C,) statistics."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.to(x).view(shape)) / std.to(x).view(shape)


def _apply_on(out: Tensor, mask: Tensor, op: Callable[..., Tensor], arg: Tensor | None) -> None:
    """In place: ``out[b] = op(out[b], arg[b])`` for the clips with ``mask[b]`` (CPU bool).

    ``op`` may overwrite its input (the in-place cores do); a sub-batch is a gathered copy.
    """
    idx = mask.nonzero().squeeze(1)  # (n,) on the CPU: no device sync
    if idx.numel() == 0:
        return
    args = () if arg is None else (arg[idx],)
    if idx.numel() == out.shape[0]:
        result = op(out, *args)
        if result is not out:
            out.copy_(result)
        return
    dev_idx = idx.to(out.device, non_blocking=True)
    flat = out.view(out.shape[0], -1)  # (B, C*T*H*W) view
    sub = flat.index_select(0, dev_idx).view(-1, *out.shape[1:])  # (n, C, T, H, W) copy
    flat.index_copy_(0, dev_idx, op(sub, *args).reshape(idx.numel(), -1))


def apply_photometric(
    x: Tensor, params: ClipParams, cfg: AugmentConfig | None = None, *, inplace: bool = False
) -> Tensor:
    """Colour jitter in a random order per clip, grayscale, blur, solarize; C == 3.

    Each op runs only on the sub-batch of clips that use it (clips that skip an op are left
    bit-exact); masks are read on the CPU (one small copy if params live on the accelerator).
    ``cfg`` is unused (every per-clip quantity lives in ``params``), kept for the contract.
    ``inplace`` may overwrite a float32 / float64 ``x``. Output clamped to [0, 1].
    """
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"apply_photometric expects (B, 3, T, H, W), got {tuple(x.shape)}")
    p = params.to("cpu")
    out = x if inplace and x.dtype in (torch.float32, torch.float64) else _fresh(x)
    jitter_ops = (
        (_brightness_, p.brightness, 1.0),
        (_contrast_, p.contrast, 1.0),
        (_saturation_, p.saturation, 1.0),
        (_hue_, p.hue, 0.0),
    )
    for rnd in range(4):
        for k, (op, factor, identity) in enumerate(jitter_ops):
            sel = p.jitter & (p.jitter_order[:, rnd] == k) & (factor != identity)
            _apply_on(out, sel, op, factor)
    _apply_on(out, p.gray, _gray_, None)
    _apply_on(out, p.blur_sigma > 0, gaussian_blur, p.blur_sigma)
    _apply_on(out, p.solarize, solarize, None)
    return out.clamp_(0, 1)
