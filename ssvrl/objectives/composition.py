"""YAML composition of an objective's views: the ``OBJECTIVES`` registry, ``view_motion`` and
the motion-alignment needs applied to the views an objective declares, and their checks.

:func:`compose_views` applies ``cfg.view_motion`` and the alignment view's motion map to the
declared views; :meth:`Objective.__init_subclass__ <ssvrl.objectives.base.Objective>` wraps a
subclass's ``views()`` with it. :func:`check_composition` runs the same checks when the config
is built. See the module docstring of :mod:`ssvrl.objectives.base` for the YAML.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from ssvrl.config.errors import ConfigError
from ssvrl.objectives.views import ViewSpec
from ssvrl.registry import Registry

if TYPE_CHECKING:
    from ssvrl.objectives.base import Objective
    from ssvrl.objectives.objective_config import ObjectiveConfig

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
