"""The files ``ssvrl extract`` writes: feature arrays saved atomically, and ``extract.json``.

A feature file appears only complete: it is written to a temporary file in the same folder and
renamed over its final name (``os.replace`` is atomic on POSIX), so after a crash or a kill a
``.npy`` either holds all of a video's windows or does not exist, and a rerun can skip every
existing one. ``extract.json`` records the protocol (what the features mean) and one row per
video; a rerun into a folder made with a different protocol is refused rather than mixing
features of two models or window settings in one folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SUMMARY",
    "ProtocolMismatch",
    "check_protocol",
    "finished_rows",
    "load_summary",
    "save_atomic",
    "write_json",
]

SUMMARY = "extract.json"


class ProtocolMismatch(ValueError):
    """``--out`` already holds features extracted with a different protocol."""


def save_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_summary(out: Path) -> dict[str, Any] | None:
    """The previous run's ``extract.json`` in ``out``, or None when there is none."""
    path = out / SUMMARY
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ProtocolMismatch(
            f"{path} is unreadable ({err}); move it away to start over"
        ) from None
    return data if isinstance(data, dict) else None


def check_protocol(previous: dict[str, Any] | None, protocol: dict[str, Any], out: Path) -> None:
    """Raise :class:`ProtocolMismatch` naming the differing keys when ``out`` was made with
    another protocol."""
    if previous is None:
        return
    old = previous.get("protocol", {})
    diff = sorted(k for k in {*old, *protocol} if old.get(k) != protocol.get(k))
    if diff:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {protocol.get(k)!r}" for k in diff)
        raise ProtocolMismatch(
            f"{out} holds features extracted with another protocol ({changes}); use another "
            f"--out folder, or delete the old features"
        )


def finished_rows(previous: dict[str, Any] | None, out: Path) -> dict[str, dict[str, Any]]:
    """Rows of the previous run whose feature file still exists, by feature file name."""
    if previous is None:
        return {}
    rows = previous.get("videos", [])
    return {r["feature"]: r for r in rows if (out / r["feature"]).is_file()}
