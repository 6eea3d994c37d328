"""What identifies an index cache (:mod:`ssvrl.data.index_cache`): the fingerprint it is valid
for and the file it lives in.

Validity. The cache is keyed by a fingerprint of

- the data config fields that define the index: every :class:`DataConfig` field except the
  loader-only ones in :data:`LOADER_FIELDS` (so format, root, annotations, split, lists and any
  field added later), with values that name existing paths made absolute;
- size and mtime of every annotation file those fields name (a named folder contributes the
  files directly inside it, e.g. ``classInd.txt`` and all split lists);
- the mtime of ``root`` and of each folder directly inside it: adding, removing or renaming a
  video in a class folder (also an atomic re-encode, which renames over the file) changes it.

:func:`~ssvrl.data.index_cache.load_cached_index` returns None whenever the fingerprint
differs. Not detected: a video rewritten in place (same directory entry), or changes deeper
than one folder below ``root``; re-run ``ssvrl data check`` after such edits.

Location: ``data.cache_dir`` if set, else ``<root>/.ssvrl_cache`` when ``root`` is writable,
else ``~/.cache/ssvrl``; one JSON file per data config (``index-<hash>.json``), replaced
atomically (temporary file + ``os.replace``), so a reader never sees a half-written cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssvrl.config.schema import DataConfig

FORMAT_VERSION = 1
# DataConfig fields that change how videos are loaded, not which videos the index holds.
LOADER_FIELDS = frozenset(
    {
        "backend",
        "short_side",
        "batch_size",
        "num_workers",
        "max_bad_fraction",
        "max_retries",
        "max_missing_fraction",
        "cache_dir",
        "decode_timeout",
        "sample_by",
        "repeats",
        "frame_fps",
        "frame_template",
        "motion_source",
        "flow_bound",
    }
)
_CACHE_FOLDER = ".ssvrl_cache"


def _index_fields(data: DataConfig) -> dict[str, Any]:
    """The fields that define the index, path values made absolute (cwd-independent)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(data):
        if f.name in LOADER_FIELDS:
            continue
        value = getattr(data, f.name)
        if isinstance(value, str) and value and os.path.exists(value):
            value = os.path.realpath(value)
        out[f.name] = (
            value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        )
    return out


def _stat_key(path: str) -> list[Any]:
    """``[path, size, mtime_ns]``; ``[path, None, None]`` for an absent path."""
    try:
        st = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, st.st_size, st.st_mtime_ns]


def _annotation_stats(fields: Mapping[str, Any], root: str) -> list[list[Any]]:
    """Size and mtime of the annotation files the index fields name (folders: their files)."""
    stats: list[list[Any]] = []
    for value in fields.values():
        if not isinstance(value, str) or not os.path.isabs(value) or value == root:
            continue
        if os.path.isdir(value):
            with os.scandir(value) as entries:
                names = sorted(e.path for e in entries if e.is_file() and e.name[0] != ".")
            stats.extend(_stat_key(p) for p in names)
        else:
            stats.append(_stat_key(value))
    return stats


def _root_stats(root: str) -> list[list[Any]]:
    """mtime of ``root`` and of each folder directly inside it (our cache folder excluded)."""
    if not os.path.isdir(root):
        return [[root, None, None]]
    with os.scandir(root) as entries:
        folders = sorted(e.path for e in entries if e.is_dir() and e.name != _CACHE_FOLDER)
    return [[p, None, _stat_key(p)[2]] for p in [root, *folders]]


def fingerprint(data: DataConfig) -> str:
    """SHA-256 (hex) of everything the index depends on; see the module docstring."""
    fields = _index_fields(data)
    root = os.path.realpath(data.root)
    payload = {
        "version": FORMAT_VERSION,
        "fields": fields,
        "annotations": _annotation_stats(fields, root),
        "root": _root_stats(root),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _config_key(data: DataConfig) -> str:
    """Short hash of the index fields alone: names the cache file of this data config."""
    text = json.dumps(_index_fields(data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _writable_dir(path: Path) -> bool:
    """True if ``path`` exists (or can be created) and files can be written into it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _candidate_dirs(data: DataConfig) -> list[Path]:
    if data.cache_dir:
        return [Path(data.cache_dir).expanduser()]
    return [Path(data.root) / _CACHE_FOLDER, Path("~/.cache/ssvrl").expanduser()]


def cache_file(data: DataConfig, *, create: bool = False) -> Path | None:
    """Where this data config's cache lives: the first candidate folder that holds it, or with
    ``create`` the first writable one (created). None when there is none."""
    name = f"index-{_config_key(data)}.json"
    candidates = _candidate_dirs(data)
    if not create:
        return next((d / name for d in candidates if (d / name).is_file()), None)
    root = Path(data.root)
    for folder in candidates:
        if folder.parent == root and not (root.is_dir() and os.access(root, os.W_OK)):
            continue  # <root>/.ssvrl_cache only when root itself is writable
        if _writable_dir(folder):
            return folder / name
    return None
