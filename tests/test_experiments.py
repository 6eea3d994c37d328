"""Every experiment YAML shipped in experiments/ loads and validates against the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssvrl.cli import load_experiment
from ssvrl.config.loader import config_diff, save_config
from ssvrl.engine.build import build_encoder, build_objective

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# sweeps/ holds sweep files, not experiments (tests/test_sweep.py validates every run of each)
FILES = sorted(
    p for p in EXPERIMENTS.rglob("*.yaml") if not {"_base", "sweeps"} & set(p.parts)
)


def test_there_are_experiments() -> None:
    assert len(FILES) >= 2


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_experiment_loads_and_builds(path: Path, tmp_path: Path) -> None:
    cfg = load_experiment(str(path), [])
    encoder = build_encoder(cfg)
    objective = build_objective(cfg, encoder.num_features)
    assert objective.views() and cfg.data.batch_size > 0
    save_config(cfg, tmp_path / "config.yaml")  # the saved config loads back unchanged
    assert config_diff(cfg, load_experiment(str(tmp_path / "config.yaml"), [])) == []
