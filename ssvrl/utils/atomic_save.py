"""``torch.save`` that a kill cannot corrupt: temp file in the same folder, fsync, rename.

The file at ``path`` is always either absent, the previous complete file or the new complete
file: the object is written to ``.<name>.partial`` next to it, flushed and fsynced, renamed
over ``path`` with ``os.replace`` (atomic within one POSIX filesystem, which a temp file in the
same folder guarantees) and the folder is fsynced so the rename itself survives a crash. A kill
mid-write leaves only the ``.partial`` file, which the next save overwrites. Torch only (no
Lightning), so a tiny process can use and test it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_torch_save", "partial_path"]


def partial_path(path: Path) -> Path:
    """Where a file is written before it is renamed to ``path``."""
    return path.with_name(f".{path.name}.partial")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)``, atomically and durably (see the module docstring)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(target)
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; skipped where a folder cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder: the rename still happened
        pass
    finally:
        os.close(fd)
