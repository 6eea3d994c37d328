"""The objective contract: one file, a config dataclass, a class registered by name.

An objective declares the views it needs (temporal sampling and augmentation recipe per view),
builds its own heads, teacher and queues, and turns the encoder and a batch of augmented views
into a scalar loss plus detached logs. It never imports Lightning and never moves itself to a
device (the engine does). State that changes outside gradient descent (EMA teachers, queues,
centres) changes only in :meth:`Objective.on_after_optimizer_step`, which the engine calls once
after every optimizer step, so that a skipped step (non-finite loss) leaves it untouched.

Out-of-tree objectives register the same way from their own module, loaded through the
experiment's ``plugins: [my_package.my_objective]`` list.

Composition: two motion techniques are switched on from YAML for ANY objective, without code
in the objective (its views and its forward stay as written):

- ``view_motion``: a motion companion per declared view, replacing the view's own
  (:class:`~ssvrl.augment.MotionUse`): FAME's foreground-background merging (Ding et al., CVPR
  2022, Sec. 3.2), MCL's motion-focused crop (Li et al., ICCV 2021, Sec. 3.2) or a plain motion
  map. The base class applies it to whatever :meth:`Objective.views` returns, so the engine's
  device-side augmentation does the merge; e.g. CVRL + FAME::

      objective:
        name: cvrl
        view_motion:
          - {view: clip1, kind: fame, fame: {area: 0.5}}

- ``addons.motion_align``: MCL's motion alignment (Sec. 3.3, :mod:`ssvrl.objectives.addons`)
  for any objective that declares ``provides_positive_logits`` (returns
  :attr:`ObjectiveOutput.positive_logits`); the anchor view gets a motion map automatically::

      objective:
        name: moco
        addons:
          motion_align: {enabled: true, weight: 1.0, layer: layer3}

Both are checked when the config is built: unknown view names (the message lists the
objective's views) and alignment on an objective without positive logits raise ConfigError.
The engine calls :meth:`Objective.run`, which runs ``forward`` with the add-ons around it.

Where the parts live (all importable from here, the objective author's entry point): the
views in :mod:`ssvrl.objectives.views`, the config in :mod:`ssvrl.objectives.objective_config`,
the registry and the composition in :mod:`ssvrl.objectives.composition`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from ssvrl.augment import AUX_SEP
from ssvrl.data.multiview_sampling import MultiViewSampler
from ssvrl.data.sampling import ClipSampler, RandomClipSampler
from ssvrl.objectives.addons import MotionAlignment
from ssvrl.objectives.composition import (
    OBJECTIVES,
    _anchor,
    _composed_views,
    check_composition,
    compose_views,
)
from ssvrl.objectives.objective_config import ObjectiveConfig
from ssvrl.objectives.views import ViewConfig, ViewSpec, expand_views

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveConfig",
    "ObjectiveOutput",
    "ViewConfig",
    "ViewSpec",
    "check_composition",
    "compose_views",
    "expand_views",
]


@dataclass
class ObjectiveOutput:
    """What :meth:`Objective.forward` returns.

    Attributes:
        loss: scalar with grad.
        logs: detached scalars for the logger (no host sync).
        positive_logits: contrastive objectives only: ``(B,)`` logit of each anchor clip's
            positive pair, WITH grad, where the anchors are rows ``0..B-1`` of the FIRST encoder
            call of the step (CVRL/SimCLR: ``clip1`` of the concatenated pass; MoCo: the
            query). Add-ons that explain the positive (MCL's motion alignment, Grad-CAM of the
            positive logit) differentiate it; None when the objective has no positive pair.
        features: ``(B, D)`` backbone output (``encoder(x)``, before any projection head) of
            the same anchors, rows ``0..B-1`` of the first encoder call, one row per sample of
            the batch; with or without grad (the engine detaches it). The online probe
            (:mod:`ssvrl.engine.online_probe`) trains on it; None (e.g. an out-of-tree
            objective) makes the engine run one extra no-grad forward of the anchor view.
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    positive_logits: torch.Tensor | None = None
    features: torch.Tensor | None = None


class Objective(nn.Module):
    """Base class of every objective. Subclasses set ``Config`` and implement the methods."""

    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    # True when the objective is correct with several samples of one video in a batch
    # (``data.repeats > 1``): it has no in-batch negatives, or it masks same-video pairs. Such
    # objectives get ``video_ids=`` (B,) in :meth:`forward`; others refuse ``data.repeats > 1``.
    supports_repeats: ClassVar[bool] = False
    # True when forward returns ObjectiveOutput.positive_logits (contrastive objectives): then
    # MCL's motion alignment can be switched on for it (``addons.motion_align``).
    provides_positive_logits: ClassVar[bool] = False
    # The view whose clips are rows 0..B-1 of the first encoder call (the anchors of
    # positive_logits); None: the first view :meth:`views` declares.
    anchor_view: ClassVar[str | None] = None

    def __init__(self, cfg: ObjectiveConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = embed_dim
        align = cfg.addons.motion_align
        self.motion_align = MotionAlignment(align) if align.enabled else None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap a subclass's own :meth:`views` so that the YAML composition (``view_motion``,
        the anchor's motion map for ``motion_align``) applies to what it declares."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("views")
        if own is not None and not getattr(own, "_composed", False):
            cls.views = _composed_views(own)  # type: ignore[method-assign,assignment]

    def views(self) -> tuple[ViewSpec, ...]:
        """The views a batch must contain, by name. Subclasses declare their own views;
        the base class then applies ``cfg.view_motion`` and the motion-alignment needs (see
        the module docstring), also when a subclass extends its parent's ``views()``."""
        raise NotImplementedError

    def run(self, encoder: nn.Module, views: dict[str, torch.Tensor], **kwargs: Any
            ) -> ObjectiveOutput:
        """:meth:`forward` with the configured add-ons; what the engine calls every step.

        With ``addons.motion_align`` on (and grad enabled), the alignment layer's output is
        captured during the first encoder call, and ``weight * alignment`` is added to the
        loss (logs: ``contrastive_loss``, ``align_loss`` and one ``align_<part>`` per part).
        """
        align = self.motion_align
        if align is None or not torch.is_grad_enabled():
            return self(encoder, views, **kwargs)
        with align.capture(encoder) as cap:
            out = self(encoder, views, **kwargs)
        if out.positive_logits is None:
            raise RuntimeError(
                f"{type(self).__name__} returned no positive_logits; motion_align needs them"
            )
        motion_key = self.align_view() + AUX_SEP + "motion"
        if motion_key not in views:
            raise KeyError(f"motion_align needs {motion_key!r} in the batch; got {sorted(views)}")
        terms = align(cap.activation, out.positive_logits, views[motion_key])
        logs = {**out.logs, "contrastive_loss": out.loss.detach()}
        logs.update({k: v.detach() for k, v in terms.items()})
        return replace(out, loss=out.loss + terms["align_loss"], logs=logs)

    def align_view(self) -> str:
        """The view whose motion map motion alignment uses (config, else the anchor)."""
        return self.cfg.addons.motion_align.view or _anchor(type(self), self.views())

    def clip_sampler(self) -> ClipSampler:
        """How the views' frame indices are drawn; default: independent uniform clips."""
        views = self.views()
        if any(v.jitter for v in views):
            return MultiViewSampler(tuple(v.timing for v in views))
        return RandomClipSampler(tuple(v.temporal for v in views))

    def forward(self, encoder: nn.Module, views: dict[str, torch.Tensor]) -> ObjectiveOutput:
        """``views``: ``{name: float (B, C, T, H, W)}`` after augmentation. Objectives with
        ``supports_repeats`` also take ``video_ids``: ``(B,)`` dataset index of each row's
        video (equal ids = samples of one video), unique across processes."""
        raise NotImplementedError

    def teacher_modules(self) -> list[nn.Module]:
        """Modules that must never receive gradients (EMA teachers); frozen by the engine."""
        return []

    @torch.no_grad()
    def on_after_optimizer_step(self, encoder: nn.Module, progress: float) -> None:
        """EMA / queue / centre updates; ``progress`` in [0, 1] is the fraction of training."""

