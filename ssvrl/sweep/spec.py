"""The sweep file: ``experiments/sweeps/<name>.yaml``, read strictly into a :class:`SweepSpec`.

A sweep file names a ``base`` experiment YAML (relative to the sweep file) and the dotted keys
to vary::

    base: ../cvrl/quickstart.yaml
    grid:                                  # cartesian product
      objective.temperature: [0.1, 0.5]
      objective.view_motion:               # a value may be a list or mapping; labels name them
        values: [[], [{view: clip1, kind: fame, fame: {area: 0.5}}]]
        labels: ["off", fame]            # quoted: YAML reads a bare off as false
    zip:                                   # zipped: equal-length lists, varied together
      optim.lr: [1.0e-3, 2.0e-3]
      data.batch_size: [16, 32]
    seeds: [0, 1, 2]
    overrides: {trainer.max_epochs: 5}     # every run
    evaluate: [linear, knn, retrieval]     # -> probe.evaluators; [] skips the probe

``zip`` may also be a list of such mappings (several zipped groups, crossed with each other and
with the grid). ``base`` itself may be swept instead (``grid: {base: [../cvrl/quickstart.yaml,
../moco/quickstart.yaml]}``, paths relative to the sweep file), to compare whole experiments.

The file is checked like an experiment config (:func:`ssvrl.config.errors.check`): unknown keys
fail with the closest valid one suggested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssvrl.config.errors import ConfigError, check
from ssvrl.config.overrides import read_yaml_tree

__all__ = ["Axis", "SlurmSpec", "SweepError", "SweepSpec", "load_sweep", "value_label"]

RESERVED = ("seed", "name", "out_dir")  # set by the sweep itself for every run
BASE = "base"  # the one swept key that is not a config key: the experiment file itself
LABEL_OK = re.compile(r"^[A-Za-z0-9._+-]+$")


class SweepError(ConfigError):
    """A bad sweep file or an invalid expanded run (the CLI exits with code 2)."""


@dataclass(frozen=True)
class _AxisFile:
    """A swept key written as a mapping: its values and a short label for each."""

    values: list[Any]
    labels: list[Any] | None = None  # strings; checked in _axis, with a hint for YAML's off/on


@dataclass(frozen=True)
class SlurmSpec:
    """``slurm:``: ``#SBATCH`` options (``{partition: gpu, gres: "gpu:1", time: "04:00:00"}``)
    and shell lines run before each array task (``["source .venv/bin/activate"]``)."""

    options: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _SweepFile:
    """The schema of the file itself, for :func:`check` (keys and types, with suggestions)."""

    base: str = ""  # required unless base is swept
    name: str | None = None  # None: the file's stem
    out_dir: str = "runs/sweeps"  # runs go to <out_dir>/<name>/<run>/
    grid: dict[str, Any] = field(default_factory=dict)  # key: a list, or an _AxisFile
    zip: dict[str, Any] | list[dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] | None = None  # None: the base config's seed, one run per configuration
    overrides: dict[str, Any] = field(default_factory=dict)
    evaluate: list[str] | None = None  # None: the base config's probe.evaluators
    slurm: SlurmSpec = field(default_factory=SlurmSpec)


@dataclass(frozen=True)
class Axis:
    """One swept dotted ``key``: its ``values`` and their ``labels`` (names in run names and
    tables; by default the value's text)."""

    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file. ``groups``: the grid's axes one per group, then each zip group;
    the runs are the product over groups (a group's axes advance together) times ``seeds``."""

    path: Path
    base: Path | None  # None: swept (each run's value, see base_for)
    name: str
    out_dir: Path
    groups: tuple[tuple[Axis, ...], ...]
    seeds: tuple[int, ...] | None
    overrides: dict[str, Any]
    evaluate: tuple[str, ...] | None
    slurm: SlurmSpec

    @property
    def axes(self) -> tuple[Axis, ...]:
        """Every swept key, in expansion order."""
        return tuple(axis for group in self.groups for axis in group)

    @property
    def sweep_dir(self) -> Path:
        return self.out_dir / self.name

    def base_for(self, values: Mapping[str, Any]) -> Path:
        """The experiment file of a run with these swept ``values``."""
        if BASE in values:
            return (self.path.parent / str(values[BASE])).resolve()
        assert self.base is not None  # load_sweep: a base is given or swept
        return self.base


def value_label(value: Any, key: str = "") -> str:
    """The default label of a swept value: YAML-like scalars, compact JSON for containers; a
    swept base: ``<folder>/<file stem>`` (``cvrl/quickstart``)."""
    if key == BASE:
        return "/".join(Path(str(value)).with_suffix("").parts[-2:])
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check the sweep file at ``path``; raises :class:`SweepError` naming the key."""
    path = Path(path)
    source = f"sweep {path}"
    try:
        raw = read_yaml_tree(path)
        check(_SweepFile, raw)
    except ConfigError as err:
        raise SweepError(err.detail, key=err.key, source=source) from None
    try:
        return _spec(path, raw)
    except SweepError as err:
        raise SweepError(err.detail, key=err.key, source=source) from None


def _spec(path: Path, raw: Mapping[str, Any]) -> SweepSpec:
    zipped = raw.get("zip") or {}
    zip_groups = [zipped] if isinstance(zipped, Mapping) else list(zipped)
    groups: list[tuple[Axis, ...]] = [
        (_axis("grid", k, v),) for k, v in (raw.get("grid") or {}).items()
    ]
    for n, group in enumerate(zip_groups):
        where = "zip" if isinstance(zipped, Mapping) else f"zip[{n}]"
        axes = tuple(_axis(where, k, v) for k, v in group.items())
        if len({len(a.values) for a in axes}) > 1:
            sizes = ", ".join(f"{a.key}: {len(a.values)}" for a in axes)
            raise SweepError(f"{where!r}: lists of unequal lengths ({sizes})", key=where)
        if axes:
            groups.append(axes)
    overrides = dict(raw.get("overrides") or {})
    _check_keys([a.key for g in groups for a in g], list(overrides))
    base = _base(path, raw.get("base") or None, [a for g in groups for a in g])
    seeds = raw.get("seeds")
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise SweepError(f"'seeds': a non-empty list without repeats, got {seeds}", key="seeds")
    evaluate = raw.get("evaluate")
    return SweepSpec(
        path=path.resolve(),
        base=base,
        name=str(raw.get("name") or path.stem),
        out_dir=Path(str(raw.get("out_dir") or _SweepFile.out_dir)),
        groups=tuple(groups),
        seeds=None if seeds is None else tuple(seeds),
        overrides=overrides,
        evaluate=None if evaluate is None else tuple(evaluate),
        slurm=SlurmSpec(**(raw.get("slurm") or {})),
    )


def _axis(where: str, key: str, entry: Any) -> Axis:
    full = f"{where}.{key}"
    if isinstance(entry, Mapping):
        try:
            check(_AxisFile, entry)
        except ConfigError as err:
            raise SweepError(f"{full!r}: {err.detail}", key=f"{full}.{err.key}") from None
        values, labels = list(entry.get("values") or []), entry.get("labels")
    elif isinstance(entry, list):
        values, labels = list(entry), None
    else:
        raise SweepError(f"{full!r} must be a list of values or a mapping with 'values' (and "
                         f"'labels'), got {entry!r}", key=full)
    if labels is not None and not all(isinstance(label, str) for label in labels):
        raise SweepError(f"{full!r}: labels must be strings, got {labels!r} (YAML reads "
                         "off/on/yes/no as booleans: quote them)", key=full)
    if not values:
        raise SweepError(f"{full!r}: no values to sweep over", key=full)
    if labels is None:
        labels = [value_label(v, key) for v in values]
    elif len(labels) != len(values):
        raise SweepError(f"{full!r}: {len(labels)} labels for {len(values)} values", key=full)
    else:
        bad = [label for label in labels if not LABEL_OK.match(label)]
        if bad:
            raise SweepError(
                f"{full!r}: label {bad[0]!r} must use only letters, digits and . _ + -", key=full
            )
    if len(set(labels)) != len(labels):
        raise SweepError(f"{full!r}: repeated values or labels {labels}", key=full)
    return Axis(key, tuple(values), tuple(labels))


def _base(path: Path, given: str | None, axes: list[Axis]) -> Path | None:
    """The base file (None when swept); every base file named must exist."""
    swept = next((a for a in axes if a.key == BASE), None)
    if given is None and swept is None:
        raise SweepError("'base' is required: the experiment YAML to sweep over", key="base")
    if given is not None and swept is not None:
        raise SweepError("'base' is both given and swept: keep one", key="base")
    for value in swept.values if swept else [given]:
        file = path.parent / str(value)
        if not isinstance(value, str) or not file.is_file():
            raise SweepError(f"'base': no such experiment file {file}", key="base")
    return None if given is None else (path.parent / given).resolve()


def _check_keys(swept: list[str], overrides: list[str]) -> None:
    """Dotted keys well formed, each set once, none of the keys the sweep sets itself."""
    for key in [*swept, *overrides]:
        if not key or not all(part.strip() for part in key.split(".")):
            raise SweepError(f"{key!r} is not a dotted key (e.g. objective.temperature)", key=key)
        if key.split(".")[0] in RESERVED or (key == BASE and key in overrides):
            hint = "use 'seeds:'" if key == "seed" else "the sweep sets it for every run"
            raise SweepError(f"{key!r} cannot be swept or overridden: {hint}", key=key)
    for i, key in enumerate(swept):
        for other in [*swept[i + 1 :], *overrides]:
            if key == other or other.startswith(f"{key}.") or key.startswith(f"{other}."):
                raise SweepError(f"{key!r} and {other!r} set the same value twice", key=key)
