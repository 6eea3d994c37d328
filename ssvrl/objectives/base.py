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
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import torch
from torch import nn

from ssvrl.augment import AUX_SEP, AugmentConfig, MotionUse, ViewMotion
from ssvrl.config.errors import ConfigError
from ssvrl.data.multiview_sampling import MultiViewSampler, ViewTiming
from ssvrl.data.sampling import ClipSampler, RandomClipSampler, TemporalView
from ssvrl.losses.precision import check_temperature
from ssvrl.objectives.addons import AddonsConfig, MotionAlignment
from ssvrl.registry import Registry


@dataclass(frozen=True)
class ObjectiveConfig:
    """Fields every objective config has; subclasses add their own (all YAML-settable).

    ``view_motion``: a list of :class:`~ssvrl.augment.ViewMotion` (a ``MotionUse`` plus the
    ``view`` whose motion companion it replaces: FAME, MCL crop, motion map), for any
    objective; a list, not a mapping, so that configs stay hashable. ``addons``:
    objective-independent add-ons (MCL's motion alignment). See the module docstring. A
    subclass's own ``__post_init__`` is followed by the composition check automatically
    (no ``super()`` call needed).
    """

    name: str = "cvrl"
    view_motion: tuple[ViewMotion, ...] = ()
    addons: AddonsConfig = field(default_factory=AddonsConfig)

    def __post_init__(self) -> None:
        _finish(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is not None and not getattr(own, "_composition_checked", False):
            cls.__post_init__ = _then_check(own)  # type: ignore[method-assign,assignment]


def _finish(cfg: ObjectiveConfig) -> None:
    object.__setattr__(cfg, "view_motion", tuple(cfg.view_motion))  # a YAML list -> tuple
    _check_temperatures(cfg)
    check_composition(cfg)


def _check_temperatures(cfg: ObjectiveConfig) -> None:
    """Every softmax temperature field (``temperature``, ``*_temperature``, ``*_temp``) is a
    number >= ``MIN_TEMPERATURE``, checked at config time (see :mod:`ssvrl.losses.precision`)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        named = f.name == "temperature" or f.name.endswith(("_temperature", "_temp"))
        if named and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                check_temperature(value, f"objective.{f.name}")
            except ValueError as err:
                raise ConfigError(str(err), key=f"objective.{f.name}") from None


def _then_check(post_init: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(post_init)
    def wrapped(self: ObjectiveConfig) -> None:
        post_init(self)
        _finish(self)

    wrapped._composition_checked = True  # type: ignore[attr-defined]
    return wrapped


@dataclass(frozen=True)
class ViewSpec:
    """One view: its temporal sampling and its (device-side) augmentation recipe.

    ``fps``: sample at this frame rate when the video's rate is known (else every ``stride``
    frames); ``jitter``: per-frame temporal jitter in source frames; ``augment``: the recipe,
    crop size and scale range included; ``motion``: a motion companion (frame differences, FAME
    merging or MCL's motion-focused crop, see :mod:`ssvrl.augment.multiview`).
    """

    name: str
    frames: int
    stride: int
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    fps: float | None = None
    jitter: int = 0
    motion: MotionUse = field(default_factory=MotionUse)

    @property
    def temporal(self) -> TemporalView:
        return TemporalView(self.name, self.frames, self.stride, self.fps)

    @property
    def timing(self) -> ViewTiming:
        return ViewTiming(self.name, self.frames, self.stride, self.fps, self.jitter)


@dataclass(frozen=True)
class ViewConfig:
    """A view as written in YAML; ``count > 1`` repeats it as ``name_0 .. name_{count-1}``.

    SVT (Ranasinghe et al., CVPR 2022, Sec. 3.1), 2 global + 8 local views::

        views:
          - {name: global, count: 2, frames: 8, fps: 4,
             augment: {crop_size: 224, scale: [0.4, 1.0]}}
          - {name: local_a, count: 4, frames: 4, fps: 8,
             augment: {crop_size: 96, scale: [0.05, 0.4]}}
          - {name: local_b, count: 4, frames: 16, fps: 16,
             augment: {crop_size: 96, scale: [0.05, 0.4]}}
    """

    name: str = "view"
    frames: int = 8
    stride: int = 1
    fps: float | None = None
    jitter: int = 0
    count: int = 1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    motion: MotionUse = field(default_factory=MotionUse)


def expand_views(configs: Sequence[ViewConfig]) -> tuple[ViewSpec, ...]:
    """ViewConfigs -> ViewSpecs, repeated views numbered; names must come out unique."""
    specs: list[ViewSpec] = []
    for c in configs:
        if c.count < 1:
            raise ValueError(f"view {c.name!r}: count must be >= 1, got {c.count}")
        names = [c.name] if c.count == 1 else [f"{c.name}_{i}" for i in range(c.count)]
        specs.extend(
            ViewSpec(n, c.frames, c.stride, c.augment, c.fps, c.jitter, c.motion) for n in names
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"view names must be unique, got {names}")
    return tuple(specs)


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


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


# ---------------------------------------------------------------------------- composition
_local = threading.local()  # depth of nested views() calls; only the outermost composes


def _anchor(cls: type[Objective], specs: Sequence[ViewSpec]) -> str:
    return cls.anchor_view or specs[0].name


def compose_views(
    cfg: ObjectiveConfig, specs: tuple[ViewSpec, ...], cls: type[Objective]
) -> tuple[ViewSpec, ...]:
    """``specs`` with ``cfg.view_motion`` applied and, when motion alignment is on, a motion
    map on the alignment view (none -> frame_diff; fame -> fame plus the merged clip's map)."""
    names = [s.name for s in specs]
    _check_view_names(cfg, names)
    uses = {v.view: v.use() for v in cfg.view_motion}
    out = [replace(s, motion=uses[s.name]) if s.name in uses else s for s in specs]
    align = cfg.addons.motion_align
    if align.enabled:
        target = align.view or _anchor(cls, out)
        for i, s in enumerate(out):
            if s.name == target and s.motion.kind == "none":
                out[i] = replace(s, motion=replace(s.motion, kind="frame_diff"))
            elif s.name == target and s.motion.kind == "fame":
                out[i] = replace(s, motion=replace(s.motion, motion_map=True))
    return tuple(out)


def _composed_views(
    views: Callable[[Objective], tuple[ViewSpec, ...]],
) -> Callable[[Objective], tuple[ViewSpec, ...]]:
    @functools.wraps(views)
    def wrapped(self: Objective) -> tuple[ViewSpec, ...]:
        depth = getattr(_local, "depth", 0)
        _local.depth = depth + 1
        try:
            specs = views(self)
        finally:
            _local.depth = depth
        return specs if depth else compose_views(self.cfg, tuple(specs), type(self))

    wrapped._composed = True  # type: ignore[attr-defined]
    return wrapped


def _check_view_names(cfg: ObjectiveConfig, names: Sequence[str]) -> None:
    listed = [v.view for v in cfg.view_motion]
    if len(set(listed)) != len(listed):
        raise ConfigError(
            f"objective.view_motion: a view is listed twice: {listed}", key="objective.view_motion"
        )
    unknown = sorted(set(listed) - set(names))
    if unknown:
        raise ConfigError(
            f"objective.view_motion: unknown view(s) {unknown}; objective {cfg.name!r} "
            f"declares views {list(names)}",
            key="objective.view_motion",
        )
    view = cfg.addons.motion_align.view
    if cfg.addons.motion_align.enabled and view is not None and view not in names:
        raise ConfigError(
            f"objective.addons.motion_align.view: unknown view {view!r}; objective "
            f"{cfg.name!r} declares views {list(names)}",
            key="objective.addons.motion_align.view",
        )


def check_composition(cfg: ObjectiveConfig) -> None:
    """Config-time checks of ``view_motion`` / ``addons`` against the named objective.

    Alignment needs an objective that ``provides_positive_logits``; view names are checked
    against the views the objective declares for this config, got from an instance built on
    the meta device (no memory, no computation). Objectives that cannot be built that way
    are checked when the engine builds them instead (the same check runs in ``views()``).
    """
    wants_align = cfg.addons.motion_align.enabled
    if not (cfg.view_motion or wants_align) or cfg.name not in OBJECTIVES:
        return
    cls = OBJECTIVES.get(cfg.name)
    if not isinstance(cfg, cls.Config):
        return  # a config of another class under this name: nothing reliable to check
    if wants_align and not cls.provides_positive_logits:
        able = [n for n in OBJECTIVES.names() if OBJECTIVES.get(n).provides_positive_logits]
        raise ConfigError(
            f"objective.addons.motion_align: objective {cfg.name!r} has no positive logits "
            "(ObjectiveOutput.positive_logits is None), and MCL's motion alignment explains "
            f"the positive logit; use it with one that has them: {able}",
            key="objective.addons.motion_align.enabled",
        )
    if getattr(_local, "checking", False):
        return
    _local.checking = True
    try:
        with torch.device("meta"):
            names = [v.name for v in cls(cfg, 8).views()]
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001  (left to the build-time check in views())
        return
    finally:
        _local.checking = False
    _check_view_names(cfg, names)
