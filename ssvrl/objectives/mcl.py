"""MCL: Motion-Focused Contrastive Learning of Video Representations (Li et al., ICCV 2021).

MoCo (:mod:`ssvrl.objectives.moco`) with MCL's two motion-focused parts:

- motion-focused video augmentation (Sec. 3.2): temporally, each view's window is the most
  moving of ``candidates`` random windows with probability ``p``
  (:class:`~ssvrl.data.motion_sampling.MotionFocusedSampler`, read by the dataset: MCL samples
  its tubelets from the motion-rich part of the video, so both clips come from there);
  spatially, the query view's crop is the most moving of ``crop_candidates`` random crops
  with probability ``crop_p`` (``MotionUse(kind="mcl_crop")``, run on the device);
- motion-focused feature learning (Sec. 3.3): the motion alignment add-on
  (:mod:`ssvrl.objectives.addons`), on by default here, aligns the gradient saliency of the
  positive logit at ``addons.motion_align.layer`` with the query's motion map in the spatial,
  temporal and spatio-temporal views. Any other contrastive objective gets the same by setting
  ``addons.motion_align.enabled: true``; MCL only changes the default.

Departures: motion maps are frame differences, not TV-L1 optical flow; MCL's extra
intra-video negatives and its clip-order task are left out (the motion parts are what this
package composes); MoCo's queue and symmetric loss are as in ``moco.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ssvrl.augment import MotionUse
from ssvrl.data.motion_sampling import MotionFocusedSampler
from ssvrl.data.sampling import ClipSampler
from ssvrl.objectives.addons import AddonsConfig, MotionAlignConfig
from ssvrl.objectives.base import OBJECTIVES, ViewSpec
from ssvrl.objectives.moco import VIEWS, MoCo, MoCoConfig


def _align_on() -> AddonsConfig:
    return AddonsConfig(motion_align=MotionAlignConfig(enabled=True))


@dataclass(frozen=True)
class MCLConfig(MoCoConfig):
    name: str = "mcl"
    temperature: float = 0.1  # MCL's released nce_t
    addons: AddonsConfig = field(default_factory=_align_on)  # motion alignment on
    candidates: int = 4  # temporal: candidate windows per view scored by frame differences
    p: float = 0.8  # temporal: probability of taking the most moving window
    low_res: int = 32  # temporal: side of the luma used to score windows
    crop_views: tuple[str, ...] = ("clip1",)  # views with the motion-focused crop (the query)
    crop_candidates: int = 8  # spatial: candidate crops scored by motion
    crop_p: float = 0.8  # spatial: probability of taking the most moving crop

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "crop_views", tuple(self.crop_views))
        unknown = set(self.crop_views) - set(VIEWS)
        if unknown:
            raise ValueError(f"crop_views: unknown view(s) {sorted(unknown)}; MCL has {VIEWS}")
        if self.candidates < 1 or self.crop_candidates < 1:
            raise ValueError("candidates and crop_candidates must be >= 1")
        if not (0 <= self.p <= 1 and 0 <= self.crop_p <= 1):
            raise ValueError(f"p and crop_p must be in [0, 1], got {self.p}, {self.crop_p}")


@OBJECTIVES.register("mcl")
class MCL(MoCo):
    """MoCo + motion-focused windows and crop + motion alignment (by default)."""

    Config = MCLConfig
    cfg: MCLConfig

    def views(self) -> tuple[ViewSpec, ...]:
        c = self.cfg
        crop = MotionUse(kind="mcl_crop", mcl_candidates=c.crop_candidates, mcl_p=c.crop_p)
        return tuple(
            replace(v, motion=crop) if v.name in c.crop_views else v for v in super().views()
        )

    def clip_sampler(self) -> ClipSampler:
        timings = tuple(v.timing for v in self.views())
        return MotionFocusedSampler(timings, self.cfg.candidates, self.cfg.p, self.cfg.low_res)
