"""Config-time checks of the ``backbone`` section: the name and the constructor options.

A misspelt ``backbone.name`` or ``backbone.options`` key must fail when the YAML is loaded, with
the key and a suggestion, not minutes later when the model is built (or, worse, on rank 1 of a
multi-node job). The options are checked against the parameters of the backbone's constructor;
for classes whose ``__init__`` only forwards ``**kwargs`` (the ViT sizes in
:mod:`ssvrl.backbones.vit` preset some arguments of :class:`~ssvrl.backbones.vit.VideoViT`), the
first constructor in the class's MRO with named parameters is used.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ssvrl.config.errors import ConfigError
from ssvrl.registry import RegistryError, closest

__all__ = ["check_backbone_section", "constructor_parameters"]


def constructor_parameters(cls: Any) -> list[str] | None:
    """Names a backbone constructor accepts; None when it takes anything (``**kwargs`` only).

    ``cls`` is a class or a factory function. Walks the MRO past ``__init__`` methods that only
    forward ``**kwargs``.
    """
    if inspect.isclass(cls):  # each class's own __init__, most derived first, object's excluded
        mro = inspect.getmro(cls)[:-1]
        candidates = [vars(c)["__init__"] for c in mro if "__init__" in vars(c)]
    else:
        candidates = [cls]
    for fn in candidates:
        params = list(inspect.signature(fn).parameters.values())
        named = [
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        ]
        if named:
            return named
    return None


def check_backbone_section(section: Any) -> None:
    """Raise :class:`ConfigError` for an unknown ``backbone.name`` or ``backbone.options`` key.

    ``section`` is the raw (merged YAML + overrides) ``backbone`` mapping; anything else is left
    to the schema check, which reports wrong types with the key.
    """
    from ssvrl.backbones import BACKBONES  # registry filled on import (after plugins)

    if not isinstance(section, Mapping):
        return
    name = section.get("name", "r3d_18")
    if not isinstance(name, str):
        return  # the schema check reports the type
    try:
        cls = BACKBONES.get(name)
    except RegistryError as err:
        raise ConfigError(f"backbone.name: {err}", key="backbone.name") from err
    options = section.get("options") or {}
    if not isinstance(options, Mapping):
        return
    accepted = constructor_parameters(cls)
    if accepted is None:
        return
    for key in options:
        if key not in accepted:
            hint = closest(str(key), accepted)
            did_you_mean = f" Did you mean {hint!r}?" if hint else ""
            raise ConfigError(
                f"backbone.options.{key}: {name!r} has no option {key!r}.{did_you_mean} "
                f"Options: {', '.join(accepted)}",
                key=f"backbone.options.{key}",
            )
    if "width" in options and section.get("width") is not None:
        raise ConfigError(
            "backbone.width and backbone.options.width are both set; keep one",
            key="backbone.width",
        )
