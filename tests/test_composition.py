"""FAME merging and MCL motion alignment switched on from YAML for any contrastive objective;
config-time refusals; CPU ``ssvrl fit`` smoke runs of mcl, fame and cvrl + fame."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import ssvrl.objectives.fame  # noqa: F401  (registers "fame")
import ssvrl.objectives.mcl  # noqa: F401  (registers "mcl")
from ssvrl.augment import MultiViewAugment
from ssvrl.backbones import build_backbone
from ssvrl.cli import load_experiment, main
from ssvrl.config.loader import ConfigError, build
from ssvrl.config.schema import OptimConfig, schema_for
from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset
from ssvrl.engine.build import build_encoder, build_objective
from ssvrl.engine.module import PretrainModule
from ssvrl.objectives import OBJECTIVES, Objective, ObjectiveConfig, ObjectiveOutput, ViewSpec

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _objective(section: dict[str, Any], width: int = 8) -> tuple[nn.Module, Objective]:
    data = {"objective": {"frames": 8, "stride": 1, "proj_hidden": 32, **section}}
    cfg = build(schema_for(data), data).objective
    encoder = build_backbone("small3d", width=width)
    return encoder, OBJECTIVES.get(cfg.name)(cfg, encoder.num_features)


def _batch(obj: Objective, B: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    clips, seeds = {}, {}
    for k, v in enumerate(obj.views()):
        raw = torch.randint(0, 80, (B, 3, v.frames, 40, 40), dtype=torch.uint8, generator=g)
        for t in range(v.frames):
            raw[:, :, t, 8:20, 2 + 3 * t : 14 + 3 * t] = 220
        clips[v.name], seeds[v.name] = raw, torch.arange(B) + 10 * k
    return MultiViewAugment(obj.views())(clips, seeds)


def test_cvrl_fame_from_yaml_merges_clip1_in_the_engine() -> None:
    cfg = load_experiment(str(EXPERIMENTS / "cvrl" / "quickstart_fame.yaml"), [])
    base = load_experiment(str(EXPERIMENTS / "cvrl" / "quickstart.yaml"), [])
    encoder = build_encoder(cfg)
    obj = build_objective(cfg, encoder.num_features)
    clip1, clip2 = obj.views()
    assert clip1.motion.kind == "fame" and clip1.motion.fame.area == 0.5
    assert clip2.motion.kind == "none"
    module = PretrainModule(encoder, obj, OptimConfig(), 8)
    g = torch.Generator().manual_seed(0)
    raw = {v.name: torch.randint(0, 255, (4, 3, 8, 64, 64), dtype=torch.uint8, generator=g)
           for v in obj.views()}
    seeds = {v.name: torch.arange(4) for v in obj.views()}
    views = module.augment(raw, seeds)
    assert views["clip1/fame_mask"].shape == (4, 1, 1, 56, 56) and "clip2/fame_mask" not in views
    # The composition is the only difference from the CVRL quickstart.
    assert cfg.objective.view_motion and not base.objective.view_motion
    plain = build_objective(base, encoder.num_features).views()
    assert [v.motion.kind for v in plain] == ["none", "none"]


def test_unknown_view_names_fail_at_config_build_with_the_valid_names() -> None:
    bad = {"objective": {"name": "cvrl", "view_motion": [{"view": "query", "kind": "fame"}]}}
    with pytest.raises(ConfigError, match=r"unknown view\(s\) \['query'\].*\['clip1', 'clip2'\]"):
        build(schema_for(bad), bad)
    twice = [{"view": "clip1", "kind": "fame"}, {"view": "clip1", "kind": "frame_diff"}]
    bad = {"objective": {"name": "moco", "view_motion": twice}}
    with pytest.raises(ConfigError, match="listed twice"):
        build(schema_for(bad), bad)
    bad = {"objective": {"name": "simclr",
                         "addons": {"motion_align": {"enabled": True, "view": "clip3"}}}}
    with pytest.raises(ConfigError, match=r"'clip3'.*\['clip1', 'clip2'\]"):
        build(schema_for(bad), bad)
    bad = {"objective": {"name": "mcl", "addons": {"motion_align": {"parts": ["spatial", "x"]}}}}
    with pytest.raises((ConfigError, ValueError), match="parts"):
        build(schema_for(bad), bad)


@pytest.mark.parametrize("name", ["cvrl", "simclr"])
def test_motion_alignment_on_any_contrastive_objective(name: str) -> None:
    torch.manual_seed(0)
    encoder, obj = _objective(
        {"name": name, "addons": {"motion_align": {"enabled": True, "layer": "stages.2"}}}
    )
    views = _batch(obj)
    assert obj.views()[0].motion.kind == "frame_diff" and "clip1/motion" in views
    out = obj.run(encoder, views)
    assert torch.isfinite(out.loss)
    align = out.logs["align_loss"]
    assert torch.isfinite(align) and 0 < float(align) <= 3
    torch.testing.assert_close(out.loss.detach(), out.logs["contrastive_loss"] + align)
    assert {"align_spatial", "align_temporal", "align_spatiotemporal"} <= set(out.logs)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_add_ons_off_leave_the_objective_unchanged() -> None:
    torch.manual_seed(0)
    encoder, obj = _objective({"name": "cvrl"})
    views = _batch(obj)
    assert set(views) == {"clip1", "clip2"} and obj.motion_align is None
    torch.manual_seed(1)
    a = obj.run(encoder, views)
    torch.manual_seed(1)
    b = obj(encoder, views)
    torch.testing.assert_close(a.loss, b.loss)
    assert set(a.logs) == {"embedding_std"}


def test_moco_with_fame_and_motion_alignment() -> None:
    torch.manual_seed(0)
    encoder, obj = _objective({
        "name": "moco", "queue_size": 16,
        "view_motion": [{"view": "clip1", "kind": "fame"}],
        "addons": {"motion_align": {"enabled": True}},
    })
    clip1 = obj.views()[0]
    assert clip1.motion.kind == "fame" and clip1.motion.motion_map  # merged clip's motion
    views = _batch(obj)
    assert {"clip1/fame_mask", "clip1/motion"} <= set(views)
    out = obj.run(encoder, views)
    assert torch.isfinite(out.loss) and torch.isfinite(out.logs["align_loss"])


class _NoPositive(Objective):
    """A toy non-contrastive objective: no positive pair, so no positive_logits."""

    def views(self) -> tuple[ViewSpec, ...]:
        return (ViewSpec("clip", 4, 1),)

    def forward(self, encoder: nn.Module, views: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return ObjectiveOutput(encoder(views["clip"]).square().mean())


def test_objectives_without_positive_logits_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(OBJECTIVES._items, "no_positive", _NoPositive)
    data = {"objective": {"name": "no_positive", "addons": {"motion_align": {"enabled": True}}}}
    with pytest.raises(ConfigError, match="'no_positive' has no positive logits.*cvrl"):
        build(schema_for(data), data)
    ok = {"objective": {"name": "no_positive", "view_motion": [{"view": "clip", "kind": "fame"}]}}
    cfg = build(schema_for(ok), ok).objective
    assert isinstance(cfg, ObjectiveConfig) and cfg.view_motion[0].kind == "fame"
    hash(cfg)  # configs stay hashable


# ------------------------------------------------------------------------ CLI smoke runs
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(
        out, SynthSpec(num_classes=4, groups=3, clips_per_group=2, frames=40, seed=2), workers=2
    )
    return out


@pytest.mark.parametrize(
    "config, extra",
    [
        ("mcl/quickstart.yaml", ["objective.queue_size=32"]),
        ("fame/quickstart.yaml", ["objective.queue_size=32"]),
        ("cvrl/quickstart_fame.yaml", []),
    ],
)
def test_fit_smoke(config: str, extra: list[str], tiny_data: Path, tmp_path: Path) -> None:
    args = [
        f"data.root={tiny_data / 'videos'}",
        f"data.annotations={tiny_data / 'annotations'}",
        f"out_dir={tmp_path}",
        "name=smoke",
        "trainer.max_epochs=1",
        "data.batch_size=8",
        "data.num_workers=0",
        "backbone.width=8",
        "objective.proj_hidden=32",
        "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
        *extra,
    ]
    assert main(["fit", str(EXPERIMENTS / config), *args]) == 0
    run = tmp_path / "smoke" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    if config.startswith("mcl"):
        aligns = [float(r["train/align_loss"]) for r in rows if r.get("train/align_loss")]
        assert aligns and all(0 <= a <= 3 for a in aligns)
