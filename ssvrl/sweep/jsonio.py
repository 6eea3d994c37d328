"""Reading the sweep's small JSON files (``probe.json``, ``results.json``, ``sweep.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def is_number(value: Any) -> bool:
    """An int or float metric value (a bool is not a metric)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
