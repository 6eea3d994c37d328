"""Batched, frame-consistent video augmentation run on the device (CVRL, Sec. 3.3).

``VideoAugment(AugmentConfig())(clips_uint8, seeds)`` -> normalised float32 views; parameters are
drawn per clip from per-clip seeds (``sample_params``) and can be replayed (``apply_geometry`` on
masks or motion maps).
"""

from ssvrl.augment.ops import (
    LUMA,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    apply_geometry,
    apply_photometric,
    crop_theta,
    gaussian_blur,
    gaussian_kernels,
    normalize,
    rgb_to_gray,
    solarize,
    to_grayscale,
)
from ssvrl.augment.params import ClipParams, center_crop_params, draw_uniforms, sample_params
from ssvrl.augment.recipe import AugmentConfig, VideoAugment, to_unit_float

__all__ = [
    "LUMA",
    "AugmentConfig",
    "ClipParams",
    "VideoAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "apply_geometry",
    "apply_photometric",
    "center_crop_params",
    "crop_theta",
    "draw_uniforms",
    "gaussian_blur",
    "gaussian_kernels",
    "normalize",
    "rgb_to_gray",
    "sample_params",
    "solarize",
    "to_grayscale",
    "to_unit_float",
]
