"""The multi-view builder: uint8 clips of every view -> ``dict[name -> augmented tensor]``.

Each view has its own recipe (crop size, scale range, colour ops and their probabilities) and
optionally a motion companion (:class:`MotionUse`):

- ``frame_diff``: the view's frame-difference motion map, cropped with the view's own
  parameters (replay), is added as ``"<view>/motion"`` (B, 1, T, S, S);
- ``fame``: FAME (Ding et al., CVPR 2022, Sec. 3.2) merges each clip's foreground onto another
  clip's background BEFORE the view's augmentation; the mask, cropped with the same
  parameters, is added as ``"<view>/fame_mask"`` (B, 1, 1, S, S) in {0, 1};
- ``mcl_crop``: MCL's motion-focused crop (Li et al., ICCV 2021, Sec. 3.2), plus
  ``"<view>/motion"``;
- ``motion_map: true`` adds ``"<view>/motion"`` to a ``none`` or ``fame`` view too (for a FAME
  view, the motion of the merged clip, the one the encoder sees), e.g. for MCL's motion
  alignment on a FAME query.

Views of different sizes and frame counts coexist: every view is its own batch. Parameters
depend on (clip, seed) only, so splitting a batch across processes changes nothing, except
FAME's partners, which are drawn among the clips a process holds (as per-GPU FAME does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from ssvrl.augment.fame import FameConfig, fame
from ssvrl.augment.motion import clip_motion, frame_difference
from ssvrl.augment.motion_crop import motion_focused_params
from ssvrl.augment.ops import apply_geometry
from ssvrl.augment.params import ClipParams
from ssvrl.augment.recipe import AugmentConfig, VideoAugment

AUX_SEP = "/"  # "<view>/motion", "<view>/fame_mask"


@dataclass(frozen=True)
class MotionUse:
    """What motion information a view uses (YAML: ``motion: {kind: fame, fame: {area: 0.5}}``)."""

    kind: Literal["none", "frame_diff", "fame", "mcl_crop"] = "none"
    fame: FameConfig = field(default_factory=FameConfig)
    mcl_candidates: int = 8  # candidate crops scored by motion
    mcl_p: float = 0.8  # probability of taking the most moving candidate
    motion_map: bool = False  # also emit "<view>/motion" for kind none / fame (see above)


@dataclass(frozen=True)
class ViewMotion(MotionUse):
    """A :class:`MotionUse` for the view called ``view`` (YAML: ``{view: clip1, kind: fame}``);
    objectives' ``view_motion`` lists these (a tuple: configs stay hashable)."""

    view: str = ""

    def use(self) -> MotionUse:
        """The motion use without the view name."""
        return MotionUse(self.kind, self.fame, self.mcl_candidates, self.mcl_p, self.motion_map)


class ViewLike(Protocol):
    """What the builder reads from a view spec (``ssvrl.objectives.ViewSpec`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def augment(self) -> AugmentConfig: ...

    @property
    def motion(self) -> MotionUse: ...


@dataclass
class ViewBatch:
    """The builder's full result: views, the params each used (for replay), motion companions."""

    views: dict[str, Tensor]  # name -> float32 (B, C, T, S, S)
    params: dict[str, ClipParams]  # name -> the per-clip params of that view
    aux: dict[str, Tensor] = field(default_factory=dict)  # "<view>/motion" etc.
    partners: dict[str, Tensor] = field(default_factory=dict)  # FAME views: (B,) donors

    def flat(self) -> dict[str, Tensor]:
        """Views and companions in one dict (what objectives receive)."""
        return {**self.views, **self.aux}


class MultiViewAugment(nn.Module):
    """One :class:`VideoAugment` per view, run on the device after the batch transfer."""

    def __init__(self, views: Sequence[ViewLike]) -> None:
        super().__init__()
        names = [v.name for v in views]
        if len(set(names)) != len(names) or any(AUX_SEP in n or "." in n for n in names):
            raise ValueError(f"view names must be unique, without '/' or '.': {names}")
        self.augs = nn.ModuleDict({v.name: VideoAugment(v.augment) for v in views})
        self.motion = {v.name: v.motion for v in views}

    def __getitem__(self, name: str) -> VideoAugment:
        aug = self.augs[name]
        assert isinstance(aug, VideoAugment)
        return aug

    @torch.no_grad()
    def run(
        self,
        clips: Mapping[str, Tensor],
        seeds: Mapping[str, Tensor],
        stored_motion: Mapping[str, Tensor] | None = None,
    ) -> ViewBatch:
        """``clips``: name -> uint8 (B, C, T, H, W) on the device; ``seeds``: name -> (B,).

        ``stored_motion``: optional name -> float (B, 1, T, H, W) stored motion (optical-flow
        magnitude read by the loader, ``data.motion_source: flow``); where given it replaces
        the view's frame differences as its motion map (FAME's mask keeps using frame
        differences, as the paper does)."""
        out = ViewBatch({}, {})
        stored = stored_motion or {}
        for name, x in clips.items():
            aug, use = self[name], self.motion[name]
            s = torch.as_tensor(seeds[name]).cpu()
            hw, size = (x.shape[-2], x.shape[-1]), aug.cfg.crop_size
            own_map = use.kind in ("frame_diff", "mcl_crop") or (
                use.motion_map and use.kind == "none"
            )
            motion = None
            if own_map:
                motion = stored[name].float() if name in stored else frame_difference(x)
            if use.kind == "mcl_crop":
                assert motion is not None
                params = motion_focused_params(
                    aug.cfg, s, clip_motion(motion), use.mcl_candidates, use.mcl_p
                )
            else:
                params = aug.sample(s, hw)
            if use.kind == "fame":
                x, mask, out.partners[name] = fame(x, s, use.fame)
                out.aux[name + AUX_SEP + "fame_mask"] = apply_geometry(
                    mask, params, size, mode="nearest"
                )  # (B, 1, 1, S, S)
                if use.motion_map:
                    motion = frame_difference(x)  # of the merged clip: (B, 1, T, H, W)
            if motion is not None:
                out.aux[name + AUX_SEP + "motion"] = apply_geometry(motion, params, size)
            out.views[name] = aug(x, None, params=params)  # (B, C, T, S, S)
            out.params[name] = params
        return out

    def forward(
        self,
        clips: Mapping[str, Tensor],
        seeds: Mapping[str, Tensor],
        motion: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        return self.run(clips, seeds, motion).flat()
