"""One view's augmentation recipe and the ``VideoAugment`` module that runs it on the device.

The default recipe is CVRL's (Qian et al., CVPR 2021), Sec. 3.3: random resized crop with area
fraction in [0.3, 1] and aspect ratio in [3/4, 4/3], horizontal flip, colour jitter (strength
0.4 / 0.4 / 0.4 / 0.1, p = 0.8), grayscale (p = 0.2) and Gaussian blur, all "temporally
consistent": drawn once per clip and applied identically to every frame.

Typical use, after the uint8 batch reached the device::

    aug = VideoAugment(AugmentConfig())
    view1, view2 = aug(clips, seeds_view1), aug(clips, seeds_view2)   # (B, 3, T, 112, 112)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from ssvrl.augment.ops import apply_geometry, apply_photometric
from ssvrl.augment.params import ClipParams, center_crop_params, sample_params

_PAIRS = ("scale", "ratio", "blur_sigma")


@dataclass(frozen=True)
class AugmentConfig:
    """One view's recipe; every field is YAML-configurable (lists are accepted for tuples).

    Blur: sigma uniform in ``blur_sigma`` (output pixels) per clip; kernel size 2*ceil(3 sigma)+1,
    capped by the crop size (radius <= crop_size - 1), e.g. 13 taps at sigma 2 for 112 px.
    ``mean`` / ``std``: the Kinetics statistics of torchvision's video models.
    """

    crop_size: int = 112  # output H = W
    scale: tuple[float, float] = (0.3, 1.0)  # random resized crop area fraction
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # pixel aspect ratio w/h range (log-uniform)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    normalize: bool = True
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)

    def __post_init__(self) -> None:
        for f in fields(self):  # YAML / OmegaConf give lists: store tuples (hashable, frozen)
            value = getattr(self, f.name)
            if isinstance(value, Sequence) and not isinstance(value, str):
                object.__setattr__(self, f.name, tuple(float(v) for v in value))
        self._validate()

    def _validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        for name in _PAIRS:
            if len(getattr(self, name)) != 2:
                raise ValueError(f"AugmentConfig.{name} needs 2 values, got {getattr(self, name)}")
        checks = {
            "crop_size": self.crop_size >= 1,
            "scale": 0 < self.scale[0] <= self.scale[1] <= 1,
            "ratio": 0 < self.ratio[0] <= self.ratio[1],
            "blur_sigma": 0 <= self.blur_sigma[0] <= self.blur_sigma[1],
            "hue": 0 <= self.hue <= 0.5,
            "mean": len(self.mean) == 3,
            "std": len(self.std) == 3 and min(self.std) > 0,
        }
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            checks[name] = 0 <= getattr(self, name) <= 1
        for name in ("brightness", "contrast", "saturation"):
            checks[name] = getattr(self, name) >= 0
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid AugmentConfig field {bad[0]!r}={getattr(self, bad[0])!r}")


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 -> float32 / 255; other floats -> float32 (values kept, assumed in [0, 1])."""
    return _as_float(x).div_(255) if x.dtype == torch.uint8 else _as_float(x)


def _as_float(x: Tensor) -> Tensor:
    """float32 view of the values of uint8 / floating ``x`` (no scaling)."""
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise TypeError(f"expected uint8 or floating clips, got {x.dtype}")
    return x.float()


class VideoAugment(nn.Module):
    """Batched, frame-consistent augmentation of (B, C, T, H, W) clips on their own device.

    Params come from ``sample_params(cfg, seeds)`` (CPU, per-clip seeds) unless given for
    replay; they stay on the CPU, where the ops read their masks, and per-clip factors are sent
    to ``x.device`` by the ops. Runs under ``no_grad``; output is always float32.
    """

    mean: Tensor  # (3,) non-persistent buffers: follow .to(device), not saved
    std: Tensor

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32), persistent=False)

    def _geometry(self, x: Tensor, params: ClipParams) -> Tensor:
        """Crop + resize + flip of uint8 / float clips; uint8 is scaled after the (smaller) crop."""
        out = apply_geometry(_as_float(x), params, self.cfg.crop_size)  # (B, C, T, S, S)
        return out.div_(255) if x.dtype == torch.uint8 else out

    def _finish(self, x: Tensor) -> Tensor:
        """Normalise in place (``x`` is our own buffer) with the recipe's statistics."""
        if not self.cfg.normalize:
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x.sub_(self.mean.to(x).view(shape)).div_(self.std.to(x).view(shape))

    def sample(self, seeds: Tensor | Sequence[int], input_hw: tuple[int, int]) -> ClipParams:
        """The params ``forward`` would draw for ``seeds`` on clips of size ``input_hw``."""
        return sample_params(self.cfg, seeds, input_hw)

    @torch.no_grad()
    def forward(self, x: Tensor, seeds: Tensor | None, params: ClipParams | None = None) -> Tensor:
        """uint8 / float (B, C, T, H, W) -> float32 (B, C, T, crop, crop); C == 3 for colour.

        ``seeds``: (B,) int64 on the CPU; ignored when ``params`` is given (replay).
        """
        if x.dim() != 5:
            raise ValueError(f"expected (B, C, T, H, W) clips, got shape {tuple(x.shape)}")
        if params is None:
            if seeds is None:
                raise ValueError("VideoAugment needs seeds or params")
            params = self.sample(seeds, (x.shape[-2], x.shape[-1]))
        if params.batch_size != x.shape[0]:
            raise ValueError(f"{params.batch_size} params for a batch of {x.shape[0]} clips")
        x = self._geometry(x, params)  # (B, C, T, S, S) in [0, 1]
        x = apply_photometric(x, params, self.cfg, inplace=True)
        return self._finish(x)

    @torch.no_grad()
    def eval_transform(self, x: Tensor) -> Tensor:
        """Deterministic: centre crop of the short side, resize to ``crop_size``, normalise."""
        params = center_crop_params(x.shape[0], (x.shape[-2], x.shape[-1]))
        return self._finish(self._geometry(x, params))

    def extra_repr(self) -> str:
        return repr(self.cfg)
