"""Raw config layers: YAML files (with ``inherit:``) and command-line ``key=value`` overrides.

Both become plain nested dicts, stacked by :func:`deep_merge` (later layers win), before any
schema is involved; the typed checks happen once, on the merged result, in ``loader.build``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ssvrl.config.errors import ConfigError

COMMAND_LINE = "command line"


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``3e-4`` as a float (YAML 1.2 does; PyYAML's 1.1 rules
    want a dot and a signed exponent, so ``lr: 3e-4`` would otherwise be the string '3e-4')."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely (no Python objects), with exponent floats; errors name ``source``."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {err}", source=source) from None


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``top`` over ``base``; mappings merge recursively, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml_tree(path: str | Path) -> dict[str, Any]:
    """Load ``path`` with its ``inherit:`` files merged underneath, recursively.

    ``inherit`` (a path or a list of paths, relative to the file naming them) is loaded first, in
    order, so that the file itself wins; it is removed from the result.
    """
    return _read_tree(Path(path).expanduser(), chain=(), inherited_by=None)


def _read_tree(path: Path, chain: tuple[Path, ...], inherited_by: Path | None) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(path) :], path))
        raise ConfigError(f"inherit cycle: {cycle}", key="inherit", source=str(chain[-1]))
    if not path.is_file():
        by = f" (inherited by {inherited_by})" if inherited_by else ""
        raise ConfigError(f"config file not found: {path}{by}", source=str(inherited_by or path))
    data = load_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys to values, got {type(data).__name__}",
            source=str(path),
        )
    merged: dict[str, Any] = {}
    for parent in _inherit_list(data.pop("inherit", None), path):
        merged = deep_merge(merged, _read_tree(path.parent / parent, (*chain, path), path))
    return deep_merge(merged, data)


def _inherit_list(value: Any, path: Path) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ConfigError(
            f"'inherit' must be a path or a list of paths, got {value!r}",
            key="inherit",
            source=str(path),
        )
    return [str(Path(item).expanduser()) for item in items]


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=3e-4", "plugins=[a.b,c.d]"]`` into a nested dict.

    Values are YAML (``null``, ``true``, lists, quoted strings, exponent floats); an empty value
    (``name=``) is the empty string. Later items win, merging like config layers.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(part.strip() for part in parts):
            raise ConfigError(
                f"override {item!r} is not of the form key.path=value (e.g. optim.lr=3e-4)",
                source=COMMAND_LINE,
            )
        value: Any = "" if not text.strip() else load_yaml(text, f"{COMMAND_LINE} {item!r}")
        for part in reversed(parts):
            value = {part.strip(): value}
        result = deep_merge(result, value)
    return result


def leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the non-mapping values of ``tree`` (an empty mapping counts as a value)."""
    keys: list[str] = []
    for name, value in tree.items():
        full = f"{prefix}.{name}" if prefix else str(name)
        keys += leaf_keys(value, full) if isinstance(value, Mapping) and value else [full]
    return keys
