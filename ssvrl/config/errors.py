"""Config errors, and the schema walk that finds them before omegaconf sees the data.

omegaconf validates structured configs too, but it silently coerces ``"3"`` to ``3`` and its
messages carry no suggestions. :func:`check` therefore walks the dataclass annotations itself so
that every error names the full dotted key, the bad value and, where it can, what was meant.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import pathlib
import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A bad config: ``key`` is the dotted path of the offending entry (None when not about one)."""

    def __init__(self, detail: str, *, key: str | None = None, source: str | None = None) -> None:
        self.detail = detail
        self.key = key
        self.source = source
        super().__init__(f"{source}: {detail}" if source else detail)

    def with_source(self, source: str) -> ConfigError:
        """The same error attributed to ``source`` (a file, or a command-line override)."""
        return ConfigError(self.detail, key=self.key, source=source)


def join_key(parent: str, name: object) -> str:
    """``parent.name``, or just ``name`` at the top level."""
    return f"{parent}.{name}" if parent else str(name)


def check(schema: type, data: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first unknown key or mistyped value of ``data``.

    Only values present in ``data`` are checked; absent ones keep the schema's (trusted) defaults
    and missing required values are left for the caller, which sees the merged result.
    """
    _check(schema, data, "")


def _check(tp: Any, value: Any, key: str) -> None:
    if _deferred(value) or tp is Any or isinstance(tp, TypeVar):
        return
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        _check_union(tp, value, key)
    elif value is None:
        raise _type_error(key, tp, value)
    elif origin is Literal:
        if not any(value == a and type(value) is type(a) for a in get_args(tp)):
            raise _type_error(key, tp, value)
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _check_dataclass(tp, value, key)
    elif (origin or tp) in (list, tuple, dict, Sequence, Mapping):
        _check_container(tp, value, key)
    elif not _scalar_ok(tp, value):
        raise _type_error(key, tp, value)


def _deferred(value: Any) -> bool:
    """``???`` (missing) and ``${...}`` interpolations are resolved and checked by omegaconf."""
    return isinstance(value, str) and (value == "???" or "${" in value)


def _check_union(tp: Any, value: Any, key: str) -> None:
    arms = [arm for arm in get_args(tp) if arm is not type(None)]
    if value is None:
        if len(arms) == len(get_args(tp)):
            raise _type_error(key, tp, value)
        return
    if len(arms) == 1:  # Optional[X]: X's errors about nested keys pass through unchanged
        try:
            _check(arms[0], value, key)
        except ConfigError as err:
            if err.key != key:
                raise
            raise _type_error(key, tp, value) from None
        return
    for arm in arms:
        try:
            _check(arm, value, key)
            return
        except ConfigError:
            continue
    raise _type_error(key, tp, value)


def _check_dataclass(cls: type, value: Any, key: str) -> None:
    if isinstance(value, cls):
        return
    if not isinstance(value, Mapping):
        raise _type_error(key, cls, value)
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for name, item in value.items():
        if name not in names:
            raise _unknown_key(key, name, names)
        _check(hints[name], item, join_key(key, name))


def _check_container(tp: Any, value: Any, key: str) -> None:
    base, args = get_origin(tp) or tp, get_args(tp)
    if base in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _type_error(key, tp, value)
        key_type, item_type = args or (Any, Any)
        for name, item in value.items():
            if key_type is str and not isinstance(name, str):
                raise ConfigError(f"keys of {key!r} must be str, got {name!r}", key=key)
            _check(item_type, item, join_key(key, name))
        return
    if not isinstance(value, (list, tuple)):
        raise _type_error(key, tp, value)
    if base is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(
                f"{key!r} must have {len(args)} items ({_type_name(tp)}), got {value!r}", key=key
            )
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    for index, (item_type, item) in enumerate(zip(item_types, value, strict=False)):
        _check(item_type, item, f"{key}[{index}]")


def _scalar_ok(tp: Any, value: Any) -> bool:
    if tp is float:  # an int is a fine float; a bool is not a number here
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or (isinstance(value, str) and value in tp.__members__)
    if tp is pathlib.Path:
        return isinstance(value, (str, os.PathLike))
    return isinstance(value, tp) if isinstance(tp, type) else True


def _unknown_key(parent: str, name: object, valid: list[str]) -> ConfigError:
    full = join_key(parent, name)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {join_key(parent, close[0])!r}?" if close else ""
    where = f"under {parent!r}" if parent else "at the top level"
    return ConfigError(
        f"unknown key {full!r}.{hint} Valid keys {where}: {', '.join(valid)}", key=full
    )


def _type_error(key: str, tp: Any, value: Any) -> ConfigError:
    shown = "null" if value is None else f"{_short_repr(value)} ({type(value).__name__})"
    return ConfigError(f"{key!r} must be {_expected(tp)}, got {shown}{_hint(tp, value)}", key=key)


def _hint(tp: Any, value: Any) -> str:
    """A suggestion for the commonest slips: quoted numbers, fractions for ints, typos."""
    if tp in (int, float) and isinstance(value, str):
        try:
            float(value)
            return "; write the number without quotes"
        except ValueError:
            return ""
    if tp is int and isinstance(value, float):
        return f"; use a whole number, e.g. {round(value)}"
    choices = _choices(tp)
    close = difflib.get_close_matches(str(value), choices, n=1) if choices else []
    return f"; did you mean {close[0]!r}?" if close else ""


def _choices(tp: Any) -> list[str]:
    arms = [arm for arm in get_args(tp) if arm is not type(None)]
    if get_origin(tp) in (Union, types.UnionType) and len(arms) == 1:
        return _choices(arms[0])
    if get_origin(tp) is Literal:
        return [str(arg) for arg in get_args(tp)]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return list(tp.__members__)
    return []


def _expected(tp: Any) -> str:
    """How a message names what ``tp`` accepts, e.g. "one of 'sgd', 'adamw'" or "int or null"."""
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"one of {', '.join(tp.__members__)} ({tp.__name__})"
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _expected(a) for a in get_args(tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} fields"
    return _type_name(tp)


def _type_name(tp: Any) -> str:
    if tp is Ellipsis:
        return "..."
    args = get_args(tp)
    if not args:
        return getattr(tp, "__name__", str(tp).replace("typing.", ""))
    origin = get_origin(tp)
    return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
