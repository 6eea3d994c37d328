"""A run folder's ``status.json``: state, times, host and pid, written atomically.

States: ``pending`` (not started), ``running``, ``done``, ``failed`` (an error: ``error.txt``
holds its tail), ``interrupted`` (stopped by SIGTERM / Ctrl-C). A ``running`` status whose
process is gone (same host, dead pid: killed with SIGKILL, machine rebooted) reads as
``interrupted``. Every state but ``done`` is run again when the sweep is run again.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "STATES", "alive_here", "effective_state", "now_iso", "pid_alive", "read_status",
    "running_fields", "sweep_lock", "write_status",
]

STATES = ("pending", "running", "done", "failed", "interrupted")
STATUS = "status.json"


def now_iso() -> str:
    """Local time with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def read_status(folder: Path) -> dict[str, Any]:
    """The folder's status (``{"state": "pending"}`` when it has none or it is unreadable)."""
    try:
        data = json.loads((folder / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"state": "pending"}
    return data if isinstance(data, dict) and data.get("state") in STATES else {"state": "pending"}


def write_status(folder: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the folder's status and write it atomically; returns the result."""
    status = {**read_status(folder), **fields, "updated": time.time()}
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".status.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(status, handle, indent=2, default=str)
        os.replace(tmp, folder / STATUS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return status


def running_fields() -> dict[str, Any]:
    """What a process starting a run records about itself."""
    return {
        "state": "running",
        "start": now_iso(),
        "start_ts": time.time(),
        "end": None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (signal 0 only checks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def effective_state(status: dict[str, Any]) -> str:
    """The state, with ``running`` read as ``interrupted`` when its process is gone. A run on
    another host cannot be checked from here and stays ``running``."""
    state = str(status.get("state", "pending"))
    if state != "running" or status.get("host") != socket.gethostname():
        return state
    pid = status.get("pid")
    return "running" if isinstance(pid, int) and pid_alive(pid) else "interrupted"


def alive_here(status: dict[str, Any]) -> bool:
    """Whether the status names a live process on this host (another process's run)."""
    pid = status.get("pid")
    return (status.get("host") == socket.gethostname() and isinstance(pid, int)
            and pid != os.getpid() and pid_alive(pid))


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold ``<sweep_dir>/sweep.lock`` while a sweep runs here: a second ``ssvrl sweep`` of the
    same file would start the same pending runs twice. A lock left by a dead process is taken
    over. Raises RuntimeError naming the live holder."""
    path = sweep_dir / "sweep.lock"
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        holder = {}
    if isinstance(holder, dict) and alive_here(holder):
        raise RuntimeError(f"another `ssvrl sweep` (pid {holder['pid']}) is running this sweep; "
                           f"wait for it or stop it (lock: {path})")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "start": now_iso()}), encoding="utf-8")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
