"""Typed experiment configs: YAML (+ ``inherit``) and CLI overrides -> a validated dataclass.

The loader is generic over any dataclass schema. Raw layers are merged as plain dicts
(:mod:`ssvrl.config.overrides`), checked strictly against the schema
(:mod:`ssvrl.config.errors`: unknown keys with suggestions, no string-to-number coercion), then
materialised through omegaconf structured configs in struct mode, so the result is a real
(possibly frozen) dataclass instance. Saving, hashing and diffing work on its canonical YAML,
which is what a run directory stores and what resume compares against.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ssvrl.config.errors import ConfigError, check
from ssvrl.config.overrides import (
    COMMAND_LINE,
    deep_merge,
    leaf_keys,
    parse_overrides,
    read_yaml_tree,
)

__all__ = [
    "ConfigError",
    "build",
    "config_diff",
    "config_hash",
    "load_config",
    "parse_overrides",
    "read_yaml_tree",
    "save_config",
    "to_yaml",
]

T = TypeVar("T")


def build(schema: type[T], data: Mapping[str, Any], *, source: str = "<config>") -> T:
    """Validate ``data`` against the dataclass ``schema`` and return a ``schema`` instance.

    Errors are :class:`ConfigError` prefixed with ``source`` and carrying the dotted key.
    """
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise TypeError(f"schema must be a dataclass type, got {schema!r}")
    try:
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        check(schema, data)
        return cast(T, _materialise(schema, data))
    except ConfigError as err:
        raise err.with_source(source) from None


def _materialise(schema: type, data: Mapping[str, Any]) -> Any:
    """Merge checked ``data`` over the schema's defaults with omegaconf and instantiate it."""
    # Dataclass-backed nodes refuse unknown keys by themselves (struct semantics); a global
    # set_struct(True) would also close dict[str, X] fields, which must accept new keys.
    base = OmegaConf.structured(schema)  # schema errors (unsupported types) are bugs: not caught
    try:
        merged = OmegaConf.merge(base, dict(data))
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            keys = ", ".join(repr(key) for key in missing)
            raise ConfigError(
                f"missing required value for {keys}; set it in the config file or on the command "
                f"line (e.g. {missing[0]}=...)",
                key=missing[0],
            )
        return _dataclass_items(schema, OmegaConf.to_object(merged))
    except OmegaConfBaseException as err:  # what check() cannot see, e.g. bad interpolations
        key = getattr(err, "full_key", None) or None
        detail = str(err.msg).splitlines()[0]  # omegaconf appends full_key/type lines
        raise ConfigError(f"{key!r}: {detail}" if key else detail, key=key) from err
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # a config class's own check (__post_init__)
        raise ConfigError(f"invalid value in '{schema.__name__}': {err}") from err


def _dataclass_items(tp: Any, value: Any) -> Any:
    """``value`` with every mapping typed as a dataclass materialised as one, recursively.

    omegaconf 2.4 materialises ``list[DC]`` items but leaves the items of a ``tuple[DC, ...]``
    assigned from YAML as plain dicts; frozen (hashable) configs need tuples, so they are
    rebuilt here. Values that are already right are returned unchanged (same object).
    """
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        typed = [a for a in arms if isinstance(a, type) and dataclasses.is_dataclass(a)]
        if isinstance(value, Mapping) and len(typed) == 1:
            return _dataclass_items(typed[0], value)
        return _dataclass_items(arms[0], value) if len(arms) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, Mapping):
            return _materialise(tp, value)
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            return value
        hints = get_type_hints(type(value))
        changed = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = _dataclass_items(hints.get(f.name, Any), old)
            if new is not old:
                changed[f.name] = new
        return dataclasses.replace(value, **changed) if changed else value
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and args:
        types_ = args[:1] * len(value) if origin is list or args[-1] is Ellipsis else args
        items = [_dataclass_items(t, v) for t, v in zip(types_, value, strict=False)]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return type(value)(items)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        items_d = {k: _dataclass_items(args[1], v) for k, v in value.items()}
        if all(items_d[k] is value[k] for k in value):
            return value
        return items_d
    return value


def load_config(
    path: str | Path | None,
    overrides: Sequence[str],
    schema_factory: Callable[[Mapping[str, Any]], type[T]],
) -> T:
    """Read ``path`` (with inherits), apply CLI ``overrides``, and build the schema chosen from
    the merged raw data by ``schema_factory``. An error caused by an override names that
    override instead of the file; one raised by ``schema_factory`` without a source gets one."""
    source = str(path) if path is not None else "<defaults>"
    raw = read_yaml_tree(path) if path is not None else {}
    merged = deep_merge(raw, parse_overrides(overrides))
    try:
        return build(schema_factory(merged), merged, source=source)
    except ConfigError as err:
        item = _override_for(err.key, overrides)
        if item is not None:
            raise err.with_source(f"{COMMAND_LINE} {item!r}") from None
        if err.source is None:
            raise err.with_source(source) from None
        raise


def _override_for(key: str | None, overrides: Sequence[str]) -> str | None:
    """The last override that set ``key``, something under it, or something above it."""
    if key is None:
        return None
    for item in reversed(overrides):
        for leaf in leaf_keys(parse_overrides([item])):
            if (
                key == leaf
                or key.startswith((f"{leaf}.", f"{leaf}["))
                or leaf.startswith(f"{key}.")
            ):
                return item
    return None


def to_yaml(cfg: Any) -> str:
    """The config as YAML text, in schema field order (enums by name, tuples as lists)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write :func:`to_yaml` to ``path`` atomically, so a crash never leaves half a config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(to_yaml(cfg))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def config_hash(cfg: Any) -> str:
    """12 hex chars of the sha256 of the key-sorted YAML: equal configs hash equal."""
    text = OmegaConf.to_yaml(OmegaConf.structured(cfg), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def config_diff(a: Any, b: Any) -> list[str]:
    """One line per differing leaf, ``"optim.lr: 0.001 -> 0.0003"``; empty when equal.

    Lists are compared whole; a key present on one side only shows ``<absent>`` on the other.
    """
    left, right = _leaves(a), _leaves(b)
    lines = []
    for key in [*left, *(k for k in right if k not in left)]:
        if key not in left or key not in right or left[key] != right[key]:
            lines.append(f"{key}: {_show(left, key)} -> {_show(right, key)}")
    return lines


def _leaves(cfg: Any) -> dict[str, Any]:
    tree = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    found: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for name, value in node.items():
                walk(value, f"{prefix}.{name}" if prefix else str(name))
        else:
            found[prefix] = node

    walk(tree, "")
    return found


def _show(leaves: Mapping[str, Any], key: str) -> str:
    if key not in leaves:
        return "<absent>"
    return "null" if leaves[key] is None else repr(leaves[key])
