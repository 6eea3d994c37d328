"""A cache of a dataset's checked index: every video's probed metadata and the known-bad files.

``ssvrl data check`` writes it; training can read it with :func:`load_cached_index` instead of
re-listing the dataset, which skips the existence check of every file (tens of thousands of
``stat`` calls, slow on network file systems) and drops known-unreadable files up front.

Validity (a fingerprint of the index-defining data config fields, the annotation files and the
folders directly under ``root``) and location (``data.cache_dir``, ``<root>/.ssvrl_cache`` or
``~/.cache/ssvrl``; one JSON file per data config, replaced atomically) are described in
:mod:`ssvrl.data.index_cache_key`, which computes them; :func:`load_cached_index` returns None
whenever the fingerprint differs. The bad-file verdicts are those of the backend recorded in
:attr:`CachedIndex.backend`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssvrl.config.schema import DataConfig
from ssvrl.data.index import VideoIndex, VideoRecord
from ssvrl.data.index_cache_key import (
    FORMAT_VERSION,
    LOADER_FIELDS,
    _candidate_dirs,
    _index_fields,
    cache_file,
    fingerprint,
)

__all__ = [
    "CachedIndex",
    "VideoInfo",
    "LOADER_FIELDS",
    "BAD_STATUSES",
    "cache_file",
    "fingerprint",
    "load_cached_index",
    "save_index_cache",
]

# Statuses of files that training should never try to decode.
BAD_STATUSES = frozenset({"unreadable", "timeout", "missing"})


@dataclass(frozen=True)
class VideoInfo:
    """What the check found for one listed file (None where it could not be read)."""

    status: str  # ok / too_short / unreadable / timeout / missing
    reason: str
    num_frames: int | None
    fps: float | None
    height: int | None
    width: int | None


@dataclass(frozen=True)
class CachedIndex:
    """One subset as cached by ``ssvrl data check``.

    Attributes:
        subset: ``"train"`` or ``"test"``.
        index: the usable videos (status ``ok`` or ``too_short``) in the order the annotation
            lists give, with the classes of a fresh index; ``index.missing`` holds the listed
            files that were absent at check time. A drop-in for ``build_video_index``'s result.
        bad: ``(path, status, reason)`` of the files excluded as unreadable or timed out.
        info: the probe result of every listed file, usable or not, by path.
        backend: the decoder the check used (its verdicts hold for that backend).
        created: UNIX time the cache was written.
    """

    subset: str
    index: VideoIndex
    bad: tuple[tuple[Path, str, str], ...]
    info: Mapping[Path, VideoInfo]
    backend: str
    created: float


def save_index_cache(
    data: DataConfig,
    subsets: Mapping[str, tuple[VideoIndex, Sequence[tuple[Path, VideoInfo]]]],
    backend: str,
) -> Path:
    """Write the cache: per subset, its fresh index and the probe result of every listed file
    (present and missing), in index order. Returns the cache file.

    Raises:
        OSError: no candidate folder is writable (names them).
    """
    target = cache_file(data, create=True)  # creates the folder BEFORE the root is fingerprinted
    if target is None:
        tried = ", ".join(str(d) for d in _candidate_dirs(data))
        raise OSError(f"no writable folder for the index cache (tried {tried}); set data.cache_dir")
    payload: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "fingerprint": fingerprint(data),
        "fields": _index_fields(data),
        "backend": backend,
        "created": time.time(),
        "subsets": {},
    }
    for subset, (index, infos) in subsets.items():
        root = os.path.realpath(index.root)
        payload["subsets"][subset] = {
            "root": root,
            "classes": list(index.classes),
            "labels": {os.path.relpath(r.path, root): r.label for r in index.records},
            "videos": [
                [
                    os.path.relpath(p, root),
                    i.status,
                    i.reason,
                    i.num_frames,
                    i.fps,
                    i.height,
                    i.width,
                ]
                for p, i in infos
            ],
        }
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, separators=(",", ":"))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is as public as the data
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_cached_index(data: DataConfig, subset: str) -> CachedIndex | None:
    """The cached ``subset`` of this data config, or None if there is no cache, it is unreadable
    or of another format version, it lacks the subset, or its fingerprint no longer matches.

    Meant for training: ``cached.index`` replaces ``build_video_index(data, subset)`` (same
    order and labels, known-bad files left out, no per-file existence checks).
    """
    path = cache_file(data)
    if path is None:
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("version") != FORMAT_VERSION:
        return None
    entry = payload.get("subsets", {}).get(subset)
    if entry is None or payload.get("fingerprint") != fingerprint(data):
        return None
    root = Path(entry["root"])
    labels: dict[str, int] = entry["labels"]
    records, missing, bad, info = [], [], [], {}
    for rel, status, reason, frames, fps, height, width in entry["videos"]:
        path_ = root / rel
        info[path_] = VideoInfo(status, reason, frames, fps, height, width)
        if status == "missing":
            missing.append(path_)
        elif status in BAD_STATUSES:
            bad.append((path_, status, reason))
        elif rel in labels:
            records.append(VideoRecord(path_, labels[rel]))
    index = VideoIndex(root, tuple(records), tuple(entry["classes"]), tuple(missing))
    return CachedIndex(
        subset, index, tuple(bad), info, str(payload.get("backend")), float(payload["created"])
    )
