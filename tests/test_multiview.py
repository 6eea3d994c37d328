"""Multi-view specs from YAML, their temporal sampling, the builder and the module end to end."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ssvrl.augment import AugmentConfig, MotionUse, MultiViewAugment, sample_params
from ssvrl.augment.ops import apply_geometry
from ssvrl.backbones import build_backbone
from ssvrl.config.loader import ConfigError, build, config_hash, load_config, to_yaml
from ssvrl.config.schema import OptimConfig, schema_for
from ssvrl.data.multiview_sampling import MultiViewSampler, ViewTiming
from ssvrl.engine.module import PretrainModule
from ssvrl.objectives import (
    OBJECTIVES,
    Objective,
    ObjectiveConfig,
    ObjectiveOutput,
    ViewConfig,
    expand_views,
)

SVT_YAML = """
views:
  - name: global
    count: 2
    frames: 8
    fps: 4
    augment: {crop_size: 224, scale: [0.4, 1.0]}
  - {name: local_a, count: 4, frames: 4, fps: 8, augment: {crop_size: 96, scale: [0.05, 0.4]}}
  - {name: local_b, count: 2, frames: 8, fps: 16, augment: {crop_size: 96, scale: [0.05, 0.4]}}
  - name: local_c
    count: 2
    frames: 16
    stride: 1
    jitter: 1
    augment: {crop_size: 96, scale: [0.05, 0.4], solarize_p: 0.2}
    motion: {kind: fame, fame: {area: 0.4}}
"""


@dataclass(frozen=True)
class MVConfig(ObjectiveConfig):
    """An unregistered test objective's config: just a list of views."""

    name: str = "multiview_test"
    views: tuple[ViewConfig, ...] = (ViewConfig("a"), ViewConfig("b"))


@dataclass(frozen=True)
class Experiment:
    objective: MVConfig = field(default_factory=MVConfig)


class MultiViewObjective(Objective):
    """Encodes every view (sizes differ) and pulls all embeddings to their mean."""

    Config = MVConfig
    cfg: MVConfig

    def views(self) -> tuple[Any, ...]:
        return expand_views(self.cfg.views)

    def forward(self, encoder: nn.Module, views: dict[str, torch.Tensor]) -> ObjectiveOutput:
        z = torch.stack([encoder(v) for k, v in views.items() if "/" not in k])  # (V, B, D)
        return ObjectiveOutput((z - z.mean(dim=0, keepdim=True)).square().mean())


# ------------------------------------------------------------------------------ config
def test_svt_views_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "svt.yaml"
    path.write_text("objective:\n" + "\n".join("  " + line for line in SVT_YAML.splitlines()))
    cfg = load_config(path, [], lambda _: Experiment)
    assert all(isinstance(v, ViewConfig) for v in cfg.objective.views)
    specs = expand_views(cfg.objective.views)
    assert [s.name for s in specs] == [
        "global_0", "global_1", "local_a_0", "local_a_1", "local_a_2", "local_a_3",
        "local_b_0", "local_b_1", "local_c_0", "local_c_1",
    ]  # fmt: skip
    big = [s for s in specs if s.augment.crop_size == 224]
    small = [s for s in specs if s.augment.crop_size == 96]
    assert len(big) == 2 and len(small) == 8
    assert all(s.augment.scale == (0.4, 1.0) and s.frames == 8 and s.fps == 4 for s in big)
    assert all(s.augment.scale == (0.05, 0.4) for s in small)
    assert {(s.frames, s.fps) for s in small} == {(4, 8), (8, 16), (16, None)}
    assert specs[-1].jitter == 1 and specs[-1].augment.solarize_p == 0.2
    assert specs[-1].motion.kind == "fame" and specs[-1].motion.fame.area == 0.4
    assert specs[0].motion.kind == "none"
    hash(cfg)  # frozen and hashable: tuples of dataclasses, not dicts
    again = build(Experiment, _yaml_dict(to_yaml(cfg)))
    assert again == cfg and config_hash(again) == config_hash(cfg)


def _yaml_dict(text: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(text)


def test_view_list_keys_are_checked_strictly() -> None:
    with pytest.raises(ConfigError, match=r"objective\.views\[1\]\.frame"):
        build(Experiment, {"objective": {"views": [{"name": "a"}, {"name": "b", "frame": 8}]}})
    with pytest.raises(ConfigError, match=r"views\[0\]\.augment\.crop_size"):
        build(Experiment, {"objective": {"views": [{"augment": {"crop_size": "96"}}]}})
    with pytest.raises(ValueError, match="unique"):
        expand_views([ViewConfig("a"), ViewConfig("a")])


def test_cvrl_per_view_recipe_from_yaml() -> None:
    data = {
        "objective": {
            "name": "cvrl",
            "augment": {"blur_p": 1.0},
            "view_augment": {"clip2": {"blur_p": 0.1, "solarize_p": 0.2}},
        }
    }
    cfg = build(schema_for(data), data)
    v1, v2 = OBJECTIVES.get("cvrl")(cfg.objective, 8).views()
    assert (v1.augment.blur_p, v1.augment.solarize_p) == (1.0, 0.0)
    assert (v2.augment.blur_p, v2.augment.solarize_p) == (0.1, 0.2)
    assert v1.augment.crop_size == v2.augment.crop_size == 112  # the rest inherited
    default = OBJECTIVES.get("cvrl")(build(schema_for({}), {}).objective, 8).views()
    assert default[0].augment == default[1].augment == AugmentConfig()  # unchanged default
    bad = {"objective": {"name": "cvrl", "view_augment": {"clip2": {"blur_q": 0.1}}}}
    with pytest.raises(ConfigError, match="blur_p"):
        build(schema_for(bad), bad)


# ------------------------------------------------------------------------ temporal sampling
def test_view_timing_rate_stride_and_jitter() -> None:
    rng = np.random.default_rng(0)
    at_rate = ViewTiming("v", frames=4, stride=2, fps=8.0)
    got = at_rate.indices(10, 100, 30.0, rng)  # 30 fps -> 8 fps: 3.75 source frames a step
    assert np.abs(got - (10 + 3.75 * np.arange(4))).max() <= 1 and (np.diff(got) >= 3).all()
    assert at_rate.indices(10, 100, None, rng).tolist() == [10, 12, 14, 16]  # no rate: stride
    assert at_rate.span(30.0) == got[-1] - 10 + 1 and at_rate.span(None) == 7
    jit = ViewTiming("j", frames=16, stride=4, jitter=1)
    draws = [jit.indices(5, 1000, None, np.random.default_rng(s)) for s in range(5)]
    plain = 5 + 4 * np.arange(16)
    for d in draws:
        assert (np.diff(d) >= 0).all() and np.abs(d - plain).max() <= 1 and d.min() >= 5
    assert any(not np.array_equal(d, plain) for d in draws)
    assert np.array_equal(draws[0], jit.indices(5, 1000, None, np.random.default_rng(0)))


def test_multiview_sampler_is_a_seeded_clip_sampler() -> None:
    specs = expand_views([ViewConfig("g", frames=8, count=2, fps=4.0), ViewConfig("l", 4, 2)])
    sampler = MultiViewSampler(tuple(s.timing for s in specs))
    one = sampler(300, np.random.default_rng(1), fps=25.0)
    assert list(one) == ["g_0", "g_1", "l"] and one["g_0"].shape == (8,)
    assert np.diff(one["g_0"]).min() >= 6  # 25 fps at 4 fps: 6.25 frames per step
    two = sampler(300, np.random.default_rng(1), fps=25.0)
    assert all(np.array_equal(one[k], two[k]) for k in one)
    assert not np.array_equal(one["g_0"], one["g_1"]), "repeated views are independent"
    short = sampler(5, np.random.default_rng(2))
    assert all(((v >= 0) & (v < 5)).all() for v in short.values())  # looped


# --------------------------------------------------------------------------- the builder
def _specs(motion: bool = True) -> tuple[Any, ...]:
    cfgs = [
        ViewConfig("g", frames=4, count=2, augment=AugmentConfig(crop_size=24, scale=(0.4, 1))),
        ViewConfig("l", frames=2, count=2, augment=AugmentConfig(crop_size=12, scale=(0.05, 0.4))),
    ]
    if motion:
        cfgs += [
            ViewConfig("d", 3, motion=MotionUse("frame_diff"), augment=AugmentConfig(crop_size=16)),
            ViewConfig("m", 3, motion=MotionUse("mcl_crop"), augment=AugmentConfig(crop_size=16)),
        ]
    return expand_views(cfgs)


def _batch(specs: tuple[Any, ...], B: int = 4, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {
        "views": {
            s.name: torch.randint(0, 256, (B, 3, s.frames, 30, 30), generator=g, dtype=torch.uint8)
            for s in specs
        },
        "seeds": {s.name: torch.arange(B) * 7 + 1000 * k for k, s in enumerate(specs)},
        "label": torch.zeros(B, dtype=torch.long),
    }


def test_builder_shapes_dtypes_and_companions() -> None:
    specs = _specs()
    batch = _batch(specs)
    out = MultiViewAugment(specs).run(batch["views"], batch["seeds"])
    for s in specs:
        S = s.augment.crop_size
        assert out.views[s.name].shape == (4, 3, s.frames, S, S)
        assert out.views[s.name].dtype == torch.float32
    assert set(out.aux) == {"d/motion", "m/motion"}
    assert out.aux["d/motion"].shape == (4, 1, 3, 16, 16)
    assert 0 <= out.aux["d/motion"].min() and out.aux["d/motion"].max() <= 1
    from ssvrl.augment import frame_difference

    replay = apply_geometry(frame_difference(batch["views"]["d"]), out.params["d"], 16)
    torch.testing.assert_close(out.aux["d/motion"], replay, atol=0, rtol=0)


def test_builder_is_frame_consistent() -> None:
    specs = _specs()
    batch = _batch(specs)
    views = {k: v[:, :, :1].expand_as(v).contiguous() for k, v in batch["views"].items()}
    out = MultiViewAugment(specs)(views, batch["seeds"])
    for s in specs:
        y = out[s.name]
        assert torch.allclose(y, y[:, :, :1].expand_as(y), atol=1e-6, rtol=0), s.name


def test_builder_views_independent_calls_deterministic() -> None:
    specs = _specs(motion=False)
    batch = _batch(specs)
    same = {k: batch["views"]["g_0"] for k in ("g_0", "g_1")}  # the same clips in both views
    aug = MultiViewAugment(specs)
    out = aug.run(same, batch["seeds"])
    assert not torch.equal(out.params["g_0"].crop, out.params["g_1"].crop)
    assert not torch.allclose(out.views["g_0"], out.views["g_1"])
    again = aug.run(same, {k: v.clone() for k, v in batch["seeds"].items()})
    assert all(torch.equal(out.views[k], again.views[k]) for k in out.views)
    next_epoch = aug.run(same, {k: v + 1 for k, v in batch["seeds"].items()})
    assert not torch.allclose(next_epoch.views["g_0"], out.views["g_0"])


def test_whole_batch_equals_two_halves() -> None:
    """The 'split across processes' requirement: params and results are per clip."""
    specs = _specs()
    batch = _batch(specs, B=6)
    aug = MultiViewAugment(specs)
    whole = aug(batch["views"], batch["seeds"])
    halves = [
        aug({k: v[sl] for k, v in batch["views"].items()},
            {k: v[sl] for k, v in batch["seeds"].items()})
        for sl in (slice(0, 3), slice(3, 6))
    ]  # fmt: skip
    for key, value in whole.items():
        joined = torch.cat([h[key] for h in halves])
        torch.testing.assert_close(value, joined, atol=1e-5, rtol=0, msg=key)


def test_fame_view_through_the_builder() -> None:
    spec = expand_views(
        [ViewConfig("f", 4, motion=MotionUse("fame"), augment=AugmentConfig(crop_size=16))]
    )
    batch = _batch(spec, B=3)
    out = MultiViewAugment(spec).run(batch["views"], batch["seeds"])
    mask = out.aux["f/fame_mask"]
    assert mask.shape == (3, 1, 1, 16, 16) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (out.partners["f"] != torch.arange(3)).all()
    plain = MultiViewAugment(spec).augs["f"](batch["views"]["f"], batch["seeds"]["f"])
    assert not torch.allclose(plain, out.views["f"]), "FAME changed nothing"
    params = sample_params(spec[0].augment, batch["seeds"]["f"], (30, 30))
    torch.testing.assert_close(out.params["f"].crop, params.crop)  # same seeds, same crop
    still = {"f": batch["views"]["f"][:, :, :1].expand(-1, -1, 4, -1, -1).contiguous()}
    y = MultiViewAugment(spec)(still, batch["seeds"])["f"]  # merged, then augmented
    assert torch.allclose(y, y[:, :, :1].expand_as(y), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- module end to end
def test_module_trains_on_views_of_different_sizes() -> None:
    cfg = MVConfig(views=tuple(expand_cfg for expand_cfg in _small_svt()))
    torch.manual_seed(0)
    backbone = build_backbone("small3d", width=8)
    objective = MultiViewObjective(cfg, backbone.num_features)
    module = PretrainModule(backbone, objective, OptimConfig(), global_batch_size=2)
    specs = objective.views()
    batch = module.on_after_batch_transfer(_batch(specs, B=2), 0)
    shapes = {k: tuple(v.shape) for k, v in batch["views"].items()}
    assert shapes["global_0"] == (2, 3, 8, 32, 32) and shapes["local_0"] == (2, 3, 2, 16, 16)
    assert shapes["mid_0"] == (2, 3, 4, 16, 16) and "global_0/motion" in shapes
    out = objective(backbone, batch["views"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())


def _small_svt() -> tuple[ViewConfig, ...]:
    """SVT's 2 global + 8 local views at CPU size (32 / 16 px)."""
    g = AugmentConfig(crop_size=32, scale=(0.4, 1.0))
    local = AugmentConfig(crop_size=16, scale=(0.05, 0.4))
    return (
        ViewConfig("global", 8, count=2, augment=g, motion=MotionUse("frame_diff")),
        ViewConfig("local", 2, count=4, fps=8.0, augment=local),
        ViewConfig("mid", 4, count=4, stride=2, augment=local),
    )


def test_view_spec_is_backward_compatible() -> None:
    spec = expand_views([ViewConfig("x", 8, 2)])[0]
    assert spec.temporal.span == 15 and spec.motion.kind == "none" and spec.jitter == 0
    assert dataclasses.replace(spec, fps=10.0).temporal.step(30.0) == 3.0
