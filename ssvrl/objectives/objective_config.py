"""The config every objective's config extends: :class:`ObjectiveConfig` and its checks.

Construction normalises ``view_motion`` to a tuple, checks every softmax temperature field and
runs the composition check of :mod:`ssvrl.objectives.composition`; a subclass's own
``__post_init__`` is wrapped so that it is followed by the same checks. Re-exported by
:mod:`ssvrl.objectives.base`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ssvrl.augment import ViewMotion
from ssvrl.config.errors import ConfigError
from ssvrl.losses.precision import check_temperature
from ssvrl.objectives.addons import AddonsConfig
from ssvrl.objectives.composition import check_composition


@dataclass(frozen=True)
class ObjectiveConfig:
    """Fields every objective config has; subclasses add their own (all YAML-settable).

    ``view_motion``: a list of :class:`~ssvrl.augment.ViewMotion` (a ``MotionUse`` plus the
    ``view`` whose motion companion it replaces: FAME, MCL crop, motion map), for any
    objective; a list, not a mapping, so that configs stay hashable. ``addons``:
    objective-independent add-ons (MCL's motion alignment). See :mod:`ssvrl.objectives.base`. A
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
