"""The experiment schema: dataclasses are the schema, YAML holds overrides only.

The ``objective`` section's type depends on ``objective.name``: :func:`schema_for` imports the
experiment's ``plugins``, looks the objective up in the registry and returns an
``ExperimentConfig`` whose ``objective`` field has that objective's config dataclass, so its
keys are validated as strictly as the rest. Derived values (e.g. the probe's clip length when
left unset) are computed by the code that needs them, never written back.

The sections live beside it: ``data``, ``backbone``, ``optim``, ``trainer`` in
:mod:`ssvrl.config.train_sections`; ``probe``, ``finetune``, ``online_probe``, ``extract`` in
:mod:`ssvrl.config.eval_sections`. All are importable from here.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from ssvrl.config.backbone_check import check_backbone_section
from ssvrl.config.eval_sections import (
    ExtractConfig,
    FinetuneConfig,
    OnlineProbeConfig,
    ProbeConfig,
)
from ssvrl.config.train_sections import (
    BackboneConfig,
    DataConfig,
    OptimConfig,
    TrainerConfig,
)
from ssvrl.objectives import OBJECTIVES, ObjectiveConfig
from ssvrl.registry import RegistryError

__all__ = [
    "BackboneConfig",
    "DataConfig",
    "ExperimentConfig",
    "ExtractConfig",
    "FinetuneConfig",
    "OnlineProbeConfig",
    "OptimConfig",
    "ProbeConfig",
    "TrainerConfig",
    "import_plugins",
    "schema_for",
]


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    out_dir: str = "lightning_logs"  # runs go to <out_dir>/<name>/version_N
    plugins: list[str] = field(default_factory=list)  # modules imported before validation
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    online_probe: OnlineProbeConfig = field(default_factory=OnlineProbeConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)


def import_plugins(modules: list[str]) -> None:
    """Import each ``plugins:`` module (it registers objectives/backbones as it loads)."""
    from ssvrl.config.loader import ConfigError

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"plugins: cannot import {name!r}: {err}", key="plugins") from err


def schema_for(raw: Mapping[str, Any]) -> type[ExperimentConfig]:
    """The ExperimentConfig subclass whose ``objective`` has the named objective's config."""
    from ssvrl.config.loader import ConfigError

    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(
            f"'plugins' must be a list of module names, got {plugins!r}", key="plugins"
        )
    import_plugins(plugins)
    from ssvrl.objectives.entry_points import load_entry_points

    load_entry_points()
    check_backbone_section(raw.get("backbone"))
    section = raw.get("objective") or {}
    name = section.get("name", ObjectiveConfig.name) if isinstance(section, Mapping) else None
    try:
        cfg_cls = OBJECTIVES.get(str(name)).Config
    except RegistryError as err:
        raise ConfigError(f"objective.name: {err}", key="objective.name") from err
    return _experiment_with(cfg_cls)  # type: ignore[arg-type]


@functools.cache
def _experiment_with(cfg_cls: type[ObjectiveConfig]) -> type[ExperimentConfig]:
    """One class per objective config (cached, so configs built twice compare equal)."""
    return make_dataclass(
        f"ExperimentConfig[{cfg_cls.__name__}]",
        [("objective", cfg_cls, field(default_factory=cfg_cls))],
        bases=(ExperimentConfig,),
        frozen=True,
    )
