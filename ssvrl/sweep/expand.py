"""Expand a :class:`SweepSpec` into runs with stable, readable, folder-safe names.

A run's name is its swept values, ``key=label`` joined by commas with each key shortened to
its shortest dotted suffix that is unique among the swept keys, then the seed, then six hex
characters of a hash of the full keys and values: ``temperature=0.1,seed=0-3fa2b1``. The hash
keeps names unique when labels are truncated or slugged; the same sweep file always gives the
same names, whatever else changes in the file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from ssvrl.sweep.spec import Axis, SweepError, SweepSpec

__all__ = ["Run", "expand", "short_keys"]

MAX_PART = 32  # characters of one key=label part of a name
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass(frozen=True)
class Run:
    """One expanded run: index in the sweep, folder name, swept values and their labels (by
    dotted key, in sweep order) and the seed (None: the base config's)."""

    index: int
    name: str
    values: dict[str, Any]
    labels: dict[str, str]
    seed: int | None

    @property
    def config_id(self) -> str:
        """The configuration without the seed: runs sharing it are aggregated together."""
        return ",".join(f"{k}={v}" for k, v in self.labels.items()) or "base"


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest suffix (whole dotted parts) not shared with another key."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o != key and (o == suffix or o.endswith(f".{suffix}")) for o in keys):
                break
        short[key] = suffix
    return short


def expand(spec: SweepSpec) -> list[Run]:
    """Every run of ``spec``: seeds outermost (a first pass over all configurations with the
    first seed comes back early), then the grid's keys and the zip groups in file order."""
    axes = spec.axes
    short = short_keys([a.key for a in axes])
    positions = list(itertools.product(*(range(len(g[0].values)) for g in spec.groups)))
    runs: list[Run] = []
    for seed in spec.seeds if spec.seeds is not None else (None,):
        for position in positions:
            chosen = [(axis, i) for group, i in zip(spec.groups, position, strict=True)
                      for axis in group]
            values = {axis.key: axis.values[i] for axis, i in chosen}
            labels = {axis.key: axis.labels[i] for axis, i in chosen}
            name = _name(labels, values, seed, short)
            runs.append(Run(len(runs), name, values, labels, seed))
    _check_unique(runs)
    return runs


def _name(labels: dict[str, str], values: dict[str, Any], seed: int | None,
          short: dict[str, str]) -> str:
    parts = [_slug(f"{short[k]}={label}") for k, label in labels.items()]
    if seed is not None:
        parts.append(f"seed={seed}")
    canonical = json.dumps([sorted(values.items()), seed], sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:6]
    return f"{','.join(parts) or 'base'}-{digest}"


def _slug(text: str) -> str:
    """Folder-safe: runs of other characters become one '-'; long parts are cut (the name's
    hash still tells them apart)."""
    return _UNSAFE.sub("-", text).strip("-")[:MAX_PART].rstrip("-")


def _check_unique(runs: list[Run]) -> None:
    seen: dict[str, Run] = {}
    for run in runs:
        if run.name in seen:  # equal values (e.g. 0.1 and 1e-1): the same run twice
            raise SweepError(
                f"runs {seen[run.name].index} and {run.index} are the same run ({run.name}): "
                "a value is repeated"
            )
        seen[run.name] = run


def describe(run: Run, axes: tuple[Axis, ...]) -> str:
    """``temperature=0.1 view_motion=fame`` (short keys and labels) for tables and logs."""
    short = short_keys([a.key for a in axes])
    return " ".join(f"{short[k]}={v}" for k, v in run.labels.items()) or "(base)"
