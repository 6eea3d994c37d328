"""Objectives by name; importing this package registers the built-in ones."""

from ssvrl.objectives import cvrl, fame, mcl, moco, simclr, svt, teg  # noqa: F401  (registration)
from ssvrl.objectives.base import (
    OBJECTIVES,
    Objective,
    ObjectiveConfig,
    ObjectiveOutput,
    ViewConfig,
    ViewSpec,
    expand_views,
)

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveConfig",
    "ObjectiveOutput",
    "ViewConfig",
    "ViewSpec",
    "expand_views",
]
