"""Per-view changes to a shared augmentation recipe: only the fields a view sets differ.

CVRL's released recipe (Qian et al., CVPR 2021, Sec. 3.3 and the official ``preprocess``
code, which follows BYOL, Grill et al., NeurIPS 2020, Appendix B) is asymmetric: Gaussian blur
with p = 1.0 on the first view and 0.1 on the second, solarisation (p = 0.2) only on the second.
With one objective-wide ``augment`` recipe, that asymmetry is a per-view override::

    objective:
      augment: {blur_p: 1.0}
      view_augment:
        clip2: {blur_p: 0.1, solarize_p: 0.2}

``AugmentOverride`` has exactly the fields of :class:`AugmentConfig`, each optional (None =
inherit), so the strict config loader still rejects misspelt keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Optional, get_type_hints

from ssvrl.augment.recipe import AugmentConfig


def _override_fields() -> list[tuple[str, Any, Any]]:
    """(name, Optional[type], field(default=None)) for every AugmentConfig field."""
    hints = get_type_hints(AugmentConfig)
    return [
        (f.name, Optional[hints[f.name]], dataclasses.field(default=None))  # noqa: UP045
        for f in dataclasses.fields(AugmentConfig)
    ]


AugmentOverride: Any = dataclasses.make_dataclass(
    "AugmentOverride",
    _override_fields(),
    frozen=True,
)
AugmentOverride.__module__ = __name__
AugmentOverride.__doc__ = "AugmentConfig's fields, all optional: the ones set replace the base's."


def apply_override(base: AugmentConfig, override: Any | None) -> AugmentConfig:
    """``base`` with every non-None field of ``override`` (an AugmentOverride or a mapping)."""
    if override is None:
        return base
    items = override.items() if isinstance(override, Mapping) else vars(override).items()
    changes = {k: v for k, v in items if v is not None}
    unknown = set(changes) - {f.name for f in dataclasses.fields(AugmentConfig)}
    if unknown:
        raise ValueError(f"unknown augment field(s) {sorted(unknown)}")
    return dataclasses.replace(base, **changes) if changes else base
