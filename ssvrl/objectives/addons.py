"""Add-ons any contrastive objective can switch on from YAML: MCL's motion alignment.

Motion alignment (Li et al., "Motion-Focused Contrastive Learning of Video Representations",
ICCV 2021, Sec. 3.3 "motion-focused feature learning"): the encoder should look where the video
moves. A gradient-based saliency map of one conv layer for the POSITIVE logit (what makes the
anchor match its positive) is aligned with the anchor clip's motion map. The saliency is itself
a gradient, so the alignment loss is differentiated a second time (double backprop: the
first-order gradient is taken with ``create_graph=True``).

Saliency of anchor clip b at layer activation ``A`` (C, T', H', W'), positive logit ``s_b``::

    G = d s_b / d A                                   (C, T', H', W')
    gradcam  : w_c   = mean_{t,h,w} G_c               (Grad-CAM, Selvaraju et al., ICCV 2017)
               S     = ReLU(sum_c w_c A_c)            (T', H', W')
    released : w_c,t = mean_{h,w} G_c,t               (the MCL authors' released code: weights
               S     = ReLU(sum_c w_c,t G_c,t)         per time step, applied to the gradient)

The motion map ``M`` (``"<view>/motion"``, frame differences cropped like the clip) is
area-averaged to (T', H', W'). Alignment is cosine similarity (the L2-normalised form of an
MSE), in three views (Sec. 3.3), each a loss ``1 - sim`` averaged over the batch:

- spatial: ``cos(mean_t S, mean_t M)`` over H' x W';
- temporal: ``cos(sum_hw S, sum_hw M)`` over T';
- spatio-temporal: ``sum_t softmax_t(sum_hw M)_t * cos(S_t, M_t)``: per-time-step spatial
  alignment, time steps weighted by how much they move.

``L = L_contrastive + weight * (L_spatial + L_temporal + L_spatiotemporal)`` (weight 1 in the
paper; the released code doubles it during the lr warm-up, which we leave out). The layer is the
last conv stage by default (the released code uses ``layer4``'s last conv of its ResNet).
Departure: the motion map is frame differences of the augmented clip, not TV-L1 flow magnitude.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PARTS = ("spatial", "temporal", "spatiotemporal")


@dataclass(frozen=True)
class MotionAlignConfig:
    """MCL's motion alignment (YAML ``objective.addons.motion_align``)."""

    enabled: bool = False
    weight: float = 1.0  # lambda on the sum of the alignment parts
    # Encoder submodule (dotted name, e.g. "layer3" / "layer4" for R3D-18, "stages.2" for
    # small3d) whose output is explained; "auto": the backbone's last stage (layer4 / the last
    # of stages / features), as in the paper.
    layer: str = "auto"
    view: str | None = None  # whose motion map; None: the objective's anchor view
    parts: tuple[str, ...] = PARTS  # any of spatial / temporal / spatiotemporal
    saliency: Literal["gradcam", "released"] = "gradcam"

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))  # YAML lists -> tuple (frozen)
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts or len(set(self.parts)) != len(self.parts):
            raise ValueError(f"motion_align.parts must be distinct items of {PARTS}, got "
                             f"{list(self.parts)}")
        if self.weight < 0:
            raise ValueError(f"motion_align.weight must be >= 0, got {self.weight}")


@dataclass(frozen=True)
class AddonsConfig:
    """Objective-independent add-ons (YAML ``objective.addons``)."""

    motion_align: MotionAlignConfig = field(default_factory=MotionAlignConfig)


def resolve_layer(encoder: nn.Module, name: str) -> tuple[str, nn.Module]:
    """The submodule called ``name`` (``"auto"``: the last stage); clear error when absent.

    A backbone on residual frames (:class:`~ssvrl.backbones.residual.ResidualInput`) takes the
    names of the backbone it wraps; the returned name is the wrapper's (``net.`` in front)."""
    from ssvrl.backbones.residual import ResidualInput

    if isinstance(encoder, ResidualInput) and not name.startswith("net."):
        inner, module = resolve_layer(encoder.net, name)
        return f"net.{inner}", module
    modules = dict(encoder.named_modules())
    if name == "auto":
        name = _last_stage(encoder)
    if name not in modules or name == "":
        top = [n for n, _ in encoder.named_children()]
        raise ValueError(
            f"motion_align.layer={name!r} is not a submodule of {type(encoder).__name__}; "
            f"its top-level modules are {top} (nested ones by dotted name, e.g. 'layer3')"
        )
    return name, modules[name]


def _last_stage(encoder: nn.Module) -> str:
    """The last stage of the known backbones (R3D/MC3/R(2+1)D, small3d, S3D)."""
    if hasattr(encoder, "layer4"):
        return "layer4"
    stages = getattr(encoder, "stages", None)
    if isinstance(stages, nn.Sequential) and len(stages):
        return f"stages.{len(stages) - 1}"
    if hasattr(encoder, "features"):
        return "features"
    raise ValueError(
        f"motion_align.layer='auto' does not know {type(encoder).__name__}; set "
        "objective.addons.motion_align.layer to one of its submodules"
    )


class _Capture:
    """The first output of one module during a ``with`` block."""

    activation: Tensor | None = None


def saliency(activation: Tensor, gradient: Tensor, kind: str = "gradcam") -> Tensor:
    """(B, C, T', H', W') activation and d(positive)/d(activation) -> (B, T', H', W') >= 0."""
    if kind == "gradcam":
        w = gradient.mean(dim=(2, 3, 4), keepdim=True)  # (B, C, 1, 1, 1)
        return F.relu((w * activation).sum(dim=1))
    if kind == "released":
        w = gradient.mean(dim=(3, 4), keepdim=True)  # (B, C, T', 1, 1)
        return F.relu((w * gradient).sum(dim=1))
    raise ValueError(f"unknown saliency {kind!r}; use 'gradcam' or 'released'")


def positive_saliency(activation: Tensor, positive_logits: Tensor, kind: str = "gradcam"
                      ) -> Tensor:
    """Saliency of the ``B`` anchors (rows 0..B-1 of ``activation`` (N, C, T', H', W')) for
    their positive logits (B,): (B, T', H', W'), differentiable (double backprop)."""
    B = positive_logits.shape[0]
    # create_graph: the gradient stays in the graph, so a loss on it trains the encoder.
    (grad,) = torch.autograd.grad(positive_logits.sum(), activation, create_graph=True)
    return saliency(activation[:B], grad[:B], kind)  # (B, T', H', W')


def alignment_terms(sal: Tensor, motion: Tensor) -> dict[str, Tensor]:
    """Per-part losses ``1 - sim`` (batch means) of saliency and motion, both (B, T', H', W')."""
    B, T = sal.shape[:2]
    s, m = _wide(sal.reshape(B, T, -1)), _wide(motion.reshape(B, T, -1))  # (B, T', H'W')
    spatial = F.cosine_similarity(s.mean(1), m.mean(1), dim=1, eps=1e-8)  # (B,)
    temporal = F.cosine_similarity(s.sum(2), m.sum(2), dim=1, eps=1e-8)  # (B,)
    per_t = F.cosine_similarity(s, m, dim=2, eps=1e-8)  # (B, T')
    spatiotemporal = (per_t * m.sum(2).softmax(dim=1)).sum(1)  # (B,)
    sims = {"spatial": spatial, "temporal": temporal, "spatiotemporal": spatiotemporal}
    return {k: (1 - v).mean() for k, v in sims.items()}


def motion_target(motion: Tensor, size: tuple[int, int, int]) -> Tensor:
    """``"<view>/motion"`` (B, 1, T, S, S) -> (B, T', H', W') area-averaged to ``size``."""
    return F.adaptive_avg_pool3d(_wide(motion), size)[:, 0]


def _wide(x: Tensor) -> Tensor:
    """float32 for half / bfloat16 (autocast), float64 kept."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class MotionAlignment(nn.Module):
    """Captures the layer's activation in the first encoder call and adds the alignment loss.

    No parameters. What :meth:`ssvrl.objectives.base.Objective.run` does::

        with align.capture(encoder) as cap:
            out = objective(encoder, views)
        terms = align(cap.activation, out.positive_logits, views["clip1/motion"])
        loss = out.loss + terms["align_loss"]
    """

    def __init__(self, cfg: MotionAlignConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @contextmanager
    def capture(self, encoder: nn.Module) -> Iterator[_Capture]:
        """Hook ``cfg.layer`` of ``encoder``; keeps the output of its first call only (the
        anchors' pass) and ignores copies of the module (e.g. a key encoder deep-copied while
        the hook was on)."""
        _, target = resolve_layer(encoder, self.cfg.layer)
        cap = _Capture()

        def hook(module: nn.Module, args: object, out: Tensor) -> None:
            if module is target and cap.activation is None:
                cap.activation = out

        handle = target.register_forward_hook(hook)
        try:
            yield cap
        finally:
            handle.remove()

    def forward(
        self, activation: Tensor | None, positive_logits: Tensor, motion: Tensor
    ) -> dict[str, Tensor]:
        """Alignment terms and their weighted sum ``"align_loss"`` (with grad).

        ``activation``: (N, C, T', H', W'), rows 0..B-1 the anchors; ``positive_logits``: (B,);
        ``motion``: (B, 1, T, S, S).
        """
        if activation is None or activation.dim() != 5:
            raise RuntimeError(
                f"motion_align: layer {self.cfg.layer!r} produced no (N, C, T', H', W') output "
                "during the objective's forward"
            )
        if not activation.requires_grad:
            raise RuntimeError(
                "motion_align: the first encoder call ran without grad; the anchors (rows "
                "0..B-1 of ObjectiveOutput.positive_logits) must come from it"
            )
        sal = positive_saliency(activation, positive_logits, self.cfg.saliency)  # (B,T',H',W')
        target = motion_target(motion, tuple(sal.shape[1:]))  # type: ignore[arg-type]
        terms = alignment_terms(sal, target.to(sal.device, sal.dtype))
        out = {f"align_{k}": terms[k] for k in self.cfg.parts}
        out["align_loss"] = self.cfg.weight * torch.stack(list(out.values())).sum()
        return out
