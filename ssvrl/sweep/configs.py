"""Each run's experiment config, built and validated through the real loader and schema.

Layers, later winning (mappings merge, anything else replaces, as ``key=value`` overrides do):
the base YAML (with its ``inherit``), the sweep's ``overrides``, ``evaluate`` as
``probe.evaluators``, the run's swept values, then ``name`` (the run's), ``out_dir`` (the
sweep folder) and ``seed``. Every run is validated before any starts; the errors of all
invalid runs are reported together, each naming the run and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ssvrl.config.loader import build, to_yaml
from ssvrl.config.overrides import deep_merge, leaf_keys, read_yaml_tree
from ssvrl.sweep.expand import Run
from ssvrl.sweep.spec import BASE, SweepError, SweepSpec

__all__ = ["config_changes", "nest", "run_raw", "validate_runs"]

MAX_REPORTED = 10  # invalid runs listed in one error


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": 2}`` -> ``{"a": {"b": 1, "c": 2}}``."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        for part in reversed(key.split(".")):
            value = {part.strip(): value}
        tree = deep_merge(tree, value)
    return tree


def run_raw(spec: SweepSpec, run: Run, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The merged raw config of ``run`` (``base``: its base YAML tree, read when None)."""
    raw = dict(base) if base is not None else read_yaml_tree(spec.base_for(run.values))
    raw = deep_merge(raw, nest(spec.overrides))
    if spec.evaluate:  # an empty list skips the probe; the schema wants at least one
        raw = deep_merge(raw, {"probe": {"evaluators": list(spec.evaluate)}})
    raw = deep_merge(raw, nest({k: v for k, v in run.values.items() if k != BASE}))
    fixed: dict[str, Any] = {"name": run.name, "out_dir": str(spec.sweep_dir)}
    if run.seed is not None:
        fixed["seed"] = run.seed
    return deep_merge(raw, fixed)


def validate_runs(spec: SweepSpec, runs: list[Run], cross_checks: bool = True) -> list[Any]:
    """The validated ``ExperimentConfig`` of every run; raises one :class:`SweepError` listing
    every invalid run (``cross_checks``: also the pretraining checks a fit does first)."""
    from ssvrl.config.schema import schema_for

    trees: dict[Path, dict[str, Any]] = {}
    configs, problems, first_key = [], [], None
    for run in runs:
        try:
            path = spec.base_for(run.values)
            if path not in trees:
                trees[path] = read_yaml_tree(path)
            merged = run_raw(spec, run, trees[path])
            cfg = build(schema_for(merged), merged, source=str(path))
            if cross_checks:
                from ssvrl.engine.build import check_pretrain_config

                check_pretrain_config(cfg)
            configs.append(cfg)
        except (ValueError, TypeError) as err:  # ConfigError, or a config's __post_init__
            key = getattr(err, "key", None)
            first_key = first_key or key
            detail = getattr(err, "detail", None) or str(err)
            where = f"{key} (from {_blame(spec, run, key)})" if key else _blame(spec, run, key)
            problems.append(f"run {run.index} {run.name}: {where}: {detail}")
    if problems:
        shown = problems[:MAX_REPORTED]
        more = len(problems) - len(shown)
        raise SweepError(
            f"{len(problems)} of {len(runs)} runs are invalid; nothing was started:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else ""),
            key=first_key,
            source=f"sweep {spec.path}",
        )
    return configs


def _blame(spec: SweepSpec, run: Run, key: str | None) -> str:
    """Which part of the sweep file set ``key``: a swept value, an override, or the base."""
    def hits(leaf: str) -> bool:
        return key is not None and (
            key == leaf or key.startswith((f"{leaf}.", f"{leaf}[")) or leaf.startswith(f"{key}.")
        )

    for swept, label in run.labels.items():
        if any(hits(leaf) for leaf in _leaves(swept, run.values[swept])):
            return f"grid/zip {swept}={label}"
    for name, value in spec.overrides.items():
        if any(hits(leaf) for leaf in _leaves(name, value)):
            return f"overrides.{name}"
    if spec.evaluate and hits("probe.evaluators"):
        return "evaluate"
    return f"base {spec.base_for(run.values).name} or the combination"


def _leaves(key: str, value: Any) -> list[str]:
    return leaf_keys(nest({key: value}))


def config_changes(cfg: Any, saved: Path) -> list[str]:
    """Leaves whose value differs between ``cfg`` and the config YAML saved at ``saved``; keys
    on one side only (a field added to the schema since) are not counted as changes."""
    old = _flat(yaml.safe_load(saved.read_text(encoding="utf-8")) or {})
    new = _flat(yaml.safe_load(to_yaml(cfg)) or {})
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in old if k in new and old[k] != new[k]]


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for name, value in tree.items():
        out.update(_flat(value, f"{prefix}.{name}" if prefix else str(name)))
    return out
