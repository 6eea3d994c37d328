"""``backbone.input: residual``: frame differences in, for every entry point of the encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ssvrl
from ssvrl.backbones import build_backbone
from ssvrl.backbones.residual import ResidualInput, residual_frames
from ssvrl.config.loader import ConfigError
from tests.test_objectives import _fit_overrides, tiny_data  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


def _clip(B: int = 2, T: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, 3, T, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_residual_frames_by_hand() -> None:
    x = _clip(T=5)
    r = residual_frames(x)
    assert r.shape == x.shape
    for t in range(4):
        assert torch.equal(r[:, :, t], x[:, :, t + 1] - x[:, :, t])
    assert torch.equal(r[:, :, 4], r[:, :, 3])  # the last difference, repeated
    assert torch.equal(residual_frames(x[:, :, :1]), torch.zeros_like(x[:, :, :1]))


def test_static_content_cancels() -> None:
    """Two clips that differ by a static image (a background) look the same to the residual
    backbone, not to the RGB one."""
    torch.manual_seed(0)
    rgb = build_backbone("small3d", width=4).eval()
    res = build_backbone("small3d", input="residual", width=4).eval()
    res.load_state_dict(rgb.state_dict())  # a bare backbone's weights fit the wrapper
    x = _clip()
    background = torch.randn(2, 3, 1, 32, 32)  # (B, C, 1, H, W), the same at every frame
    with torch.no_grad():
        assert torch.allclose(res(x), res(x + background), atol=1e-5)
        assert not torch.allclose(rgb(x), rgb(x + background), atol=1e-3)
        assert torch.equal(res(x), rgb(residual_frames(x)))
        assert torch.equal(res.forward_features(x), rgb.forward_features(residual_frames(x)))
        assert torch.equal(res.forward_temporal(x), rgb.forward_temporal(residual_frames(x)))
    assert isinstance(res, ResidualInput) and res.num_features == rgb.num_features
    assert res.stages is res.net.stages  # attributes reach through (MCL's saliency layer)
    with pytest.raises(AttributeError):
        _ = res.no_such_attribute
    assert res.temporal_size(8) == rgb.temporal_size(8)
    assert list(res.temporal_centres(8)) == list(rgb.temporal_centres(8))


def test_mcl_saliency_layer_is_found_through_the_wrapper() -> None:
    from ssvrl.objectives.addons import resolve_layer

    res = build_backbone("small3d", input="residual", width=4)
    assert resolve_layer(res, "auto") == ("net.stages.3", res.net.stages[3])
    assert resolve_layer(res, "stages.2") == ("net.stages.2", res.net.stages[2])
    assert resolve_layer(res, "net.stages.1") == ("net.stages.1", res.net.stages[1])
    with pytest.raises(ValueError, match="stages.9"):
        resolve_layer(res, "stages.9")


def test_vit_takes_residual_input_with_its_own_pooling() -> None:
    torch.manual_seed(0)
    vit = build_backbone("vit_micro").eval()
    res = build_backbone("vit_micro", input="residual").eval()
    res.load_state_dict(vit.state_dict())
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(res(x), vit(residual_frames(x)))
    assert res.patch_size == vit.patch_size and len(res.blocks) == len(vit.blocks)


def test_build_options_weights_and_bad_input(tmp_path: Path) -> None:
    torch.manual_seed(1)
    res = build_backbone("small3d", input="residual", width=4)
    assert res.build_options == {"width": 4, "input": "residual"}
    assert build_backbone("small3d", width=4).build_options == {"width": 4}
    ckpt = tmp_path / "last.ckpt"  # a training checkpoint's layout: backbone.net.*
    state = {f"backbone.{k}": v for k, v in res.state_dict().items()}
    assert all(k.startswith("backbone.net.") for k in state)
    torch.save({"state_dict": state}, ckpt)
    again = build_backbone("small3d", str(ckpt), input="residual", width=4)
    for k, v in res.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    with pytest.raises(ValueError, match="'diff'"):
        build_backbone("small3d", input="diff", width=4)


def test_config_key_is_checked() -> None:
    from ssvrl.cli import load_experiment

    cfg = load_experiment(None, ["backbone.input=residual"])
    assert cfg.backbone.input == "residual"
    with pytest.raises(ConfigError, match="backbone.input"):
        load_experiment(None, ["backbone.input=resid"])


def test_fit_probe_export_with_residual_input(
    tiny_data: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    """SVT trains a residual small3d; its teacher is probed and its export rebuilds the same
    residual model."""
    from ssvrl.cli import main

    config = tmp_path / "smoke.yaml"
    base = ROOT / "experiments" / "_base"
    config.write_text(f"inherit: [{base / 'synthetic.yaml'}, {base / 'cpu.yaml'}]\n")
    args = [*_fit_overrides("svt", tiny_data, tmp_path), "backbone.input=residual"]
    assert main(["fit", str(config), *args]) == 0
    run = tmp_path / "smoke_svt" / "version_0"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["probe", str(run / "config.yaml"), "--out", str(tmp_path / "probe"),
                 "--checkpoints", f"{ckpt}:teacher", "probe.epochs=5"]) == 0
    result = json.loads(next((tmp_path / "probe").rglob("probe.json")).read_text())
    assert result["encoder"] == "teacher" and result["num_test_videos"] > 0
    out = tmp_path / "encoder.safetensors"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    model = ssvrl.load_backbone(out)
    assert isinstance(model, ResidualInput)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[f"backbone.{k}"])


def test_mcl_fits_on_residual_frames(
    tiny_data: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    """MCL's motion alignment finds its saliency layer inside the residual wrapper."""
    from ssvrl.cli import main

    config = tmp_path / "smoke.yaml"
    base = ROOT / "experiments" / "_base"
    config.write_text(f"inherit: [{base / 'synthetic.yaml'}, {base / 'cpu.yaml'}]\n")
    args = [*_fit_overrides("mcl", tiny_data, tmp_path), "backbone.input=residual"]
    assert main(["fit", str(config), *args]) == 0
    metrics = (tmp_path / "smoke_mcl" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "align" in metrics
