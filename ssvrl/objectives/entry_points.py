"""Objectives from installed packages: the ``ssvrl.objectives`` entry-point group.

A package declares ``[project.entry-points."ssvrl.objectives"] my_obj = "my_pkg.my_obj"``;
loading the entry point imports the module, whose ``@OBJECTIVES.register`` does the rest.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

log = logging.getLogger("ssvrl")


def load_entry_points(group: str = "ssvrl.objectives") -> list[str]:
    """Import every module of the group; a broken plugin is logged and skipped, not fatal."""
    loaded = []
    for ep in entry_points(group=group):
        try:
            ep.load()
            loaded.append(ep.name)
        except Exception as err:  # noqa: BLE001  (a third-party import can raise anything)
            log.warning("plugin entry point %s (%s) failed to load: %s", ep.name, ep.value, err)
    return loaded
