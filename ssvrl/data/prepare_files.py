"""The files of ``ssvrl data prepare`` (:mod:`ssvrl.data.prepare`): the source walk, the hidden
temporary names outputs are written under, the resumable manifest and the copies of non-video
files.

Outputs and copies are written under :func:`temp_path` and renamed into place when complete;
the manifest ``dst/.ssvrl_prepare.json`` records, per video, the source's size and mtime and
the encoding settings (:func:`_is_done` compares them), and is replaced atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST = ".ssvrl_prepare.json"
_SKIP_DIRS = frozenset({".ssvrl_cache"})  # the index cache of `ssvrl data check`
_PART = ".part"


def temp_path(dst: Path) -> Path:
    """The hidden name an output is written under before the atomic rename: ``.NAME.part.EXT``
    (the extension stays last so the muxer still picks the container from it)."""
    return dst.with_name(f".{dst.name}{_PART}{dst.suffix}")


def _walk(src: Path) -> Iterator[str]:
    """Relative paths (``/``-separated) of every file under ``src``, sorted, skipping our own
    bookkeeping (manifest, temporaries, index cache)."""
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(folder, name), src).replace(os.sep, "/")
            if rel == MANIFEST or (name.startswith(".") and _PART in name):
                continue
            yield rel


def check_paths(src: Path, dst: Path) -> None:
    """Raise ValueError unless ``src`` is a folder and ``dst`` neither equals nor overlaps it
    (walking the source would otherwise meet the outputs)."""
    if not src.is_dir():
        raise ValueError(f"source folder not found: {src}")
    s, d = src.resolve(), dst.resolve()
    if s == d or s in d.parents or d in s.parents:
        raise ValueError(f"source {src} and destination {dst} must not contain each other")


def _load_manifest(dst: Path) -> dict[str, Any]:
    """The manifest's per-video entries; empty when absent or unreadable."""
    try:
        payload = json.loads((dst / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    files = payload.get("files") if isinstance(payload, dict) else None
    return files if isinstance(files, dict) else {}


def _save_manifest(dst: Path, files: dict[str, Any]) -> None:
    """Write the manifest atomically (temporary file + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=".ssvrl_prepare-", suffix=".tmp", dir=dst)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "files": files}, f, indent=0, sort_keys=True)
        os.replace(tmp, dst / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _source_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _is_done(entry: Any, src: Path, dst: Path, settings_key: dict[str, Any]) -> bool:
    """The manifest entry matches the source and settings, and the output exists."""
    if not isinstance(entry, dict) or entry.get("settings") != settings_key:
        return False
    key = _source_key(src)
    return all(entry.get(k) == v for k, v in key.items()) and dst.is_file()


def _copy(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` (atomically, mtime kept) unless size and mtime already match."""
    s = src.stat()
    try:
        d = dst.stat()
        if d.st_size == s.st_size and d.st_mtime_ns == s.st_mtime_ns:
            return False
    except FileNotFoundError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True
