"""Batched, frame-consistent video augmentation run on the device (CVRL, Sec. 3.3).

``VideoAugment(AugmentConfig())(clips_uint8, seeds)`` -> normalised float32 views; parameters are
drawn per clip from per-clip seeds (``sample_params``) and can be replayed (``apply_geometry`` on
masks or motion maps). ``MultiViewAugment`` runs one recipe per view (``dict[name -> tensor]``),
with motion maps (``motion``), FAME merging (``fame``) and MCL's motion crop (``motion_crop``).
"""

from ssvrl.augment.fame import FameConfig, fame, fame_mask, fame_merge, fame_partners
from ssvrl.augment.motion import clip_motion, flow_from_uint8, flow_magnitude, frame_difference
from ssvrl.augment.motion_crop import box_density, motion_focused_params
from ssvrl.augment.multiview import AUX_SEP, MotionUse, MultiViewAugment, ViewBatch, ViewMotion
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
from ssvrl.augment.override import AugmentOverride, apply_override
from ssvrl.augment.params import ClipParams, center_crop_params, draw_uniforms, sample_params
from ssvrl.augment.recipe import AugmentConfig, VideoAugment, to_unit_float

__all__ = [
    "AUX_SEP",
    "LUMA",
    "AugmentConfig",
    "AugmentOverride",
    "ClipParams",
    "FameConfig",
    "MotionUse",
    "MultiViewAugment",
    "VideoAugment",
    "ViewBatch",
    "ViewMotion",
    "apply_override",
    "box_density",
    "clip_motion",
    "fame",
    "fame_mask",
    "fame_merge",
    "fame_partners",
    "flow_from_uint8",
    "flow_magnitude",
    "frame_difference",
    "motion_focused_params",
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
