"""``backbone.name`` and ``backbone.options`` are checked when the config loads, and the options
reach the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssvrl.cli import load_experiment
from ssvrl.config.backbone_check import constructor_parameters
from ssvrl.config.loader import ConfigError
from ssvrl.engine.build import build_encoder

SVT = str(Path(__file__).resolve().parents[1] / "experiments" / "svt" / "quickstart_vit.yaml")
CVRL = str(Path(__file__).resolve().parents[1] / "experiments" / "cvrl" / "quickstart.yaml")


def test_unknown_backbone_name_fails_at_load_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        load_experiment(CVRL, ["backbone.name=smal3d"])
    text = str(err.value)
    assert "backbone.name" in text and "'small3d'" in text and "smal3d" in text


def test_unknown_option_names_the_key_and_the_closest_option() -> None:
    with pytest.raises(ConfigError) as err:
        load_experiment(SVT, ["backbone.options.patchsize=4"])
    text = str(err.value)
    assert "backbone.options.patchsize" in text and "'patch_size'" in text


def test_width_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="both set"):  # the quickstart sets backbone.width
        load_experiment(CVRL, ["backbone.options.width=8"])


def test_vit_options_reach_the_model() -> None:
    cfg = load_experiment(
        SVT,
        ["backbone.options.patch_size=4", "backbone.options.attention=joint",
         "backbone.options.depth=2"],
    )
    model = build_encoder(cfg)
    assert model.patch_size == 4 and len(model.blocks) == 2
    assert model.build_options["attention"] == "joint"  # kept for export / load_backbone
    out = model(torch.zeros(1, 3, 4, 16, 16))  # (B, C, T, H, W) -> (B, D)
    assert out.shape == (1, model.num_features)


def test_small3d_width_option_equals_the_width_key() -> None:
    a = build_encoder(load_experiment(CVRL, ["backbone.width=8"]))
    b = build_encoder(load_experiment(CVRL, ["backbone.width=null", "backbone.options.width=8"]))
    assert a.num_features == b.num_features
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    wider = build_encoder(load_experiment(CVRL, ["backbone.width=16"]))
    assert a.num_features != wider.num_features


def test_constructor_parameters_sees_through_kwargs_forwarding() -> None:
    from ssvrl.backbones import BACKBONES

    vit = constructor_parameters(BACKBONES.get("vit_small"))
    assert vit is not None and "patch_size" in vit and "attention" in vit

    def anything(**kwargs: object) -> None: ...

    assert constructor_parameters(anything) is None
