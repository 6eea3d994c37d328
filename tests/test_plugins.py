"""Objectives from outside ssvrl: the example package through its entry point, a module that is
only on ``sys.path`` through ``plugins:``, and the example's VICReg loss against the paper."""

from __future__ import annotations

import math
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from ssvrl.cli import load_experiment
from ssvrl.config.loader import ConfigError
from ssvrl.objectives import OBJECTIVES
from ssvrl.objectives.entry_points import load_entry_points

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin_objective"


def test_example_package_is_installed_with_its_entry_point() -> None:
    """scripts/setup.sh installs examples/plugin_objective; its entry point registers vicreg."""
    names = {ep.name: ep.value for ep in entry_points(group="ssvrl.objectives")}
    assert names.get("vicreg") == "ssvrl_vicreg_plugin.vicreg"
    assert "vicreg" in load_entry_points()
    assert OBJECTIVES.get("vicreg").__module__ == "ssvrl_vicreg_plugin.vicreg"


def test_entry_point_objective_loads_from_yaml_without_plugins_list(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("objective: {name: vicreg, proj_dim: 64, cov_weight: 2.0}\n")
    cfg = load_experiment(str(path), [])
    assert type(cfg.objective).__name__ == "VICRegConfig"
    assert (cfg.objective.proj_dim, cfg.objective.cov_weight) == (64, 2.0)
    with pytest.raises(ConfigError, match="cov_weigth|cov_weight"):
        load_experiment(str(path), ["objective.cov_weigth=1"])


def test_example_experiment_loads() -> None:
    cfg = load_experiment(str(PLUGIN / "experiments" / "quickstart.yaml"), [])
    assert cfg.objective.name == "vicreg" and cfg.plugins == ["ssvrl_vicreg_plugin.vicreg"]
    assert cfg.backbone.width == 16 and cfg.trainer.max_epochs == 30


TMP_PLUGIN = '''
from dataclasses import dataclass

import torch

from ssvrl.objectives import OBJECTIVES, Objective, ObjectiveConfig, ObjectiveOutput, ViewSpec


@dataclass(frozen=True)
class TmpConfig(ObjectiveConfig):
    name: str = "tmp_path_objective"
    frames: int = 4
    scale: float = 1.0


@OBJECTIVES.register("tmp_path_objective")
class TmpObjective(Objective):
    Config = TmpConfig

    def views(self):
        return (ViewSpec("a", self.cfg.frames, 1),)

    def forward(self, encoder, views):
        return ObjectiveOutput(self.cfg.scale * encoder(views["a"]).pow(2).mean())
'''


@pytest.fixture
def tmp_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A plugin module that is not installed, only importable from tmp_path."""
    (tmp_path / "my_tmp_plugin.py").write_text(textwrap.dedent(TMP_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_tmp_plugin", None)
    OBJECTIVES._items.pop("tmp_path_objective", None)


def test_plugins_list_imports_a_module_that_is_not_installed(tmp_plugin: Path) -> None:
    path = tmp_plugin / "exp.yaml"
    path.write_text(
        "plugins: [my_tmp_plugin]\nobjective: {name: tmp_path_objective, scale: 0.5}\n"
    )
    assert "tmp_path_objective" not in OBJECTIVES
    cfg = load_experiment(str(path), [])
    assert cfg.objective.scale == 0.5 and type(cfg.objective).__name__ == "TmpConfig"
    objective = OBJECTIVES.get("tmp_path_objective")(cfg.objective, 8)
    assert [v.name for v in objective.views()] == ["a"]
    with pytest.raises(ConfigError, match="objective.scal"):
        load_experiment(str(path), ["objective.scal=1"])


def test_unknown_plugin_module_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("plugins: [no_such_plugin_module_xyz]\n")
    with pytest.raises(ConfigError, match="no_such_plugin_module_xyz") as err:
        load_experiment(str(path), [])
    assert err.value.key == "plugins"


# ------------------------------------------------------------------- the example's VICReg loss
def slow_vicreg(z1: torch.Tensor, z2: torch.Tensor, lam: float, mu: float, nu: float,
                gamma: float = 1.0, eps: float = 1e-4) -> float:  # fmt: skip
    """Bardes et al., Eq. 1-6, with plain loops (the invariance as Algorithm 1's element mean)."""
    n, d = z1.shape
    a, b = z1.double().tolist(), z2.double().tolist()

    def var(z: list[list[float]]) -> float:
        total = 0.0
        for j in range(d):
            mean = sum(row[j] for row in z) / n
            v = sum((row[j] - mean) ** 2 for row in z) / (n - 1)
            total += max(0.0, gamma - math.sqrt(v + eps))
        return total / d

    def cov(z: list[list[float]]) -> float:
        means = [sum(row[j] for row in z) / n for j in range(d)]
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    c = sum((row[i] - means[i]) * (row[j] - means[j]) for row in z) / (n - 1)
                    total += c * c
        return total / d

    sim = sum((a[i][j] - b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    return lam * sim + mu * (var(a) + var(b)) + nu * (cov(a) + cov(b))


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 0.0, 3.0)])
def test_vicreg_loss_matches_paper(weights: tuple[float, float, float]) -> None:
    from ssvrl_vicreg_plugin.vicreg import VICRegConfig, vicreg_loss

    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(7, 5, generator=g) * 0.6
    z2 = z1 + 0.3 * torch.randn(7, 5, generator=g)
    lam, mu, nu = weights
    cfg = VICRegConfig(sim_weight=lam, var_weight=mu, cov_weight=nu)
    loss, logs = vicreg_loss(z1, z2, cfg)
    assert abs(loss.item() - slow_vicreg(z1, z2, lam, mu, nu)) < 1e-4
    assert set(logs) == {"invariance", "variance", "covariance"}
    assert vicreg_loss(z1, z1, cfg)[1]["invariance"] == 0


def test_vicreg_variance_term_prevents_collapse() -> None:
    from ssvrl_vicreg_plugin.vicreg import VICRegConfig, vicreg_loss

    cfg = VICRegConfig()
    collapsed = torch.ones(8, 4)  # every embedding equal: invariance 0, variance maximal
    loss, logs = vicreg_loss(collapsed, collapsed, cfg)
    expected = 2 * (1.0 - math.sqrt(1e-4))  # v(Z) + v(Z'), each std = sqrt(eps)
    assert abs(logs["variance"].item() - expected) < 1e-6
    assert loss.item() == pytest.approx(cfg.var_weight * expected, rel=1e-6)
