"""Per-clip augmentation parameters and their seeded sampling.

CVRL (Qian et al., CVPR 2021), Sec. 3.3 "temporally consistent spatial augmentation": every
random quantity of the spatial and colour ops is drawn once per clip and shared by all of its
frames, independently across clips and views.

Determinism: the parameters of sample ``b`` depend only on ``seeds[b]``. Its generator,
``torch.Generator().manual_seed(seed)`` on the CPU, draws one fixed-length vector of uniforms
with a fixed column layout (below), so results do not depend on the batch composition, the
number of processes or workers, and changing one probability of the recipe never shifts the
draws of another parameter. Everything after that draw is vectorised over the batch.

Crop boxes are stored as fractions of the input height / width: replay on a mask or motion map
of another resolution selects the same relative region.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ssvrl.augment.recipe import AugmentConfig

_ATTEMPTS = 10  # random-resized-crop rejection-sampling attempts (as torchvision)
# Column layout of the per-clip uniform vector (immutable constants).
_SCALE, _LOGR, _TOP, _LEFT = (slice(i * _ATTEMPTS, (i + 1) * _ATTEMPTS) for i in range(4))
_FLIP, _JITTER, _BRIGHT, _CONTRAST, _SAT, _HUE = range(40, 46)
_ORDER = slice(46, 50)
_GRAY, _BLUR, _SIGMA, _SOLAR = range(50, 54)
_N_UNIFORMS = 54


@dataclass
class ClipParams:
    """Per-clip augmentation parameters; every field has leading dimension B.

    ``jitter_order[b, r]`` is the colour op applied to clip b in round r, with ops numbered
    0 = brightness, 1 = contrast, 2 = saturation, 3 = hue (torchvision ColorJitter's numbering).
    Jitter factors are stored even where ``jitter`` is False; the ops then skip that clip.
    """

    crop: Tensor  # (B, 4) float32: y0, x0, h, w as fractions of the input height / width
    flip: Tensor  # (B,) bool: horizontal flip after the crop
    jitter: Tensor  # (B,) bool: colour jitter applied?
    brightness: Tensor  # (B,) float32 multiplicative factor, 1 = identity
    contrast: Tensor  # (B,) float32 blend factor towards the clip's mean grey, 1 = identity
    saturation: Tensor  # (B,) float32 blend factor towards the pixel's grey, 1 = identity
    hue: Tensor  # (B,) float32 hue shift in turns, [-0.5, 0.5], 0 = identity
    jitter_order: Tensor  # (B, 4) int64: a permutation of the 4 jitter ops per clip
    gray: Tensor  # (B,) bool: convert to grayscale
    blur_sigma: Tensor  # (B,) float32 Gaussian blur sigma in output pixels, 0 = no blur
    solarize: Tensor  # (B,) bool: invert pixels >= 0.5

    def _map(self, fn: Callable[[Tensor], Tensor]) -> ClipParams:
        """A new ClipParams with ``fn`` applied to every field."""
        return ClipParams(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ClipParams:
        """All fields moved to ``device`` (dtypes unchanged)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def select(self, index: Tensor) -> ClipParams:
        """The params of the clips picked by ``index`` (int64 indices or a (B,) bool mask)."""
        return self._map(lambda t: t[index.to(t.device)])

    @property
    def batch_size(self) -> int:
        """Number of clips B."""
        return int(self.flip.shape[0])


def _as_seeds(seeds: Tensor | Sequence[int]) -> list[int]:
    """Seeds as Python ints; ``seeds`` must be one-dimensional (one seed per clip)."""
    seeds = torch.as_tensor(seeds)
    if seeds.dim() != 1 or seeds.dtype.is_floating_point:
        raise ValueError(f"seeds must be a 1-D integer tensor, got {seeds.dtype} {seeds.shape}")
    return [int(s) for s in seeds.tolist()]


def draw_uniforms(seeds: Tensor | Sequence[int]) -> Tensor:
    """(B, 54) float64 uniforms in [0, 1); row b from ``Generator().manual_seed(seeds[b])``."""
    rows = [
        torch.rand(_N_UNIFORMS, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        for s in _as_seeds(seeds)
    ]
    return torch.stack(rows) if rows else torch.empty(0, _N_UNIFORMS, dtype=torch.float64)


def _uniform(u: Tensor, lo: float, hi: float) -> Tensor:
    """Map uniforms in [0, 1) to [lo, hi)."""
    return lo + (hi - lo) * u


def _sample_crop(u: Tensor, cfg: AugmentConfig, input_hw: tuple[int, int]) -> Tensor:
    """Random resized crop boxes (B, 4) = y0, x0, h, w as fractions (torchvision's algorithm).

    Up to 10 attempts: area fraction uniform in ``cfg.scale``, pixel aspect w/h log-uniform in
    ``cfg.ratio``; the first attempt that fits is used, else a centre crop with the aspect
    clamped to the range. Unlike torchvision, sizes and offsets are continuous (no rounding).
    """
    height, width = input_hw
    area = _uniform(u[:, _SCALE], *cfg.scale)  # (B, 10)
    aspect = torch.exp(_uniform(u[:, _LOGR], math.log(cfg.ratio[0]), math.log(cfg.ratio[1])))
    frac_aspect = aspect * (height / width)  # w_frac / h_frac giving pixel aspect `aspect`
    w, h = torch.sqrt(area * frac_aspect), torch.sqrt(area / frac_aspect)
    fits = (w <= 1.0) & (h <= 1.0)
    first = fits.int().argmax(dim=1, keepdim=True)  # (B, 1): first attempt that fits
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    y0 = u[:, _TOP].gather(1, first)[:, 0] * (1 - h)
    x0 = u[:, _LEFT].gather(1, first)[:, 0] * (1 - w)
    fb_h, fb_w = _fallback_hw(cfg, input_hw)
    ok = fits.any(dim=1)
    h, w = torch.where(ok, h, fb_h), torch.where(ok, w, fb_w)
    y0, x0 = torch.where(ok, y0, (1 - fb_h) / 2), torch.where(ok, x0, (1 - fb_w) / 2)
    return torch.stack([y0, x0, h, w], dim=1).float()


def _fallback_hw(cfg: AugmentConfig, input_hw: tuple[int, int]) -> tuple[float, float]:
    """Fractional (h, w) of torchvision's fallback: the largest centre crop with aspect in range."""
    in_ratio = input_hw[1] / input_hw[0]
    if in_ratio < cfg.ratio[0]:
        return in_ratio / cfg.ratio[0], 1.0
    if in_ratio > cfg.ratio[1]:
        return 1.0, cfg.ratio[1] / in_ratio
    return 1.0, 1.0


def sample_params(
    cfg: AugmentConfig, seeds: Tensor | Sequence[int], input_hw: tuple[int, int] | None = None
) -> ClipParams:
    """Draw per-clip params on the CPU; ``seeds``: (B,) int64, one per clip (and view).

    ``input_hw`` (H, W) of the clips makes the crop aspect ratio hold in pixels for non-square
    inputs; None means square. Colour factors follow torchvision's ColorJitter: brightness,
    contrast, saturation uniform in [max(0, 1 - s), 1 + s], hue uniform in [-h, h].
    """
    u = draw_uniforms(seeds)  # (B, 54) float64
    hw = (int(input_hw[0]), int(input_hw[1])) if input_hw is not None else (1, 1)
    factor = {
        name: _uniform(u[:, col], max(0.0, 1.0 - s), 1.0 + s).float()
        for name, col, s in (
            ("brightness", _BRIGHT, cfg.brightness),
            ("contrast", _CONTRAST, cfg.contrast),
            ("saturation", _SAT, cfg.saturation),
        )
    }
    blur = u[:, _BLUR] < cfg.blur_p
    sigma = torch.where(blur, _uniform(u[:, _SIGMA], *cfg.blur_sigma), 0.0).float()
    return ClipParams(
        crop=_sample_crop(u, cfg, hw),
        flip=u[:, _FLIP] < cfg.flip_p,
        jitter=u[:, _JITTER] < cfg.jitter_p,
        hue=_uniform(u[:, _HUE], -cfg.hue, cfg.hue).float(),
        jitter_order=u[:, _ORDER].argsort(dim=1),  # argsort of iid uniforms: uniform permutation
        gray=u[:, _GRAY] < cfg.grayscale_p,
        blur_sigma=sigma,
        solarize=u[:, _SOLAR] < cfg.solarize_p,
        **factor,
    )


def center_crop_params(batch: int, input_hw: tuple[int, int]) -> ClipParams:
    """Deterministic params: centre square crop of the short side, no flip, no colour ops."""
    height, width = input_hw
    h, w = min(1.0, width / height), min(1.0, height / width)
    crop = torch.tensor([(1 - h) / 2, (1 - w) / 2, h, w], dtype=torch.float32).repeat(batch, 1)
    false, ones = torch.zeros(batch, dtype=torch.bool), torch.ones(batch)
    return ClipParams(
        crop=crop,
        flip=false,
        jitter=false.clone(),
        brightness=ones,
        contrast=ones.clone(),
        saturation=ones.clone(),
        hue=torch.zeros(batch),
        jitter_order=torch.arange(4).repeat(batch, 1),
        gray=false.clone(),
        blur_sigma=torch.zeros(batch),
        solarize=false.clone(),
    )
