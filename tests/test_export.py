"""``ssvrl export`` -> ``ssvrl.load_backbone``: the encoder alone, as safetensors, round trip.

Known answers: the rebuilt encoder gives exactly the trained encoder's output on a clip (and
not a fresh initialisation's), only backbone tensors are in the file, and the metadata names
the backbone, its options, the feature size, the version and the config hash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import ssvrl
from ssvrl.backbones import build_backbone
from ssvrl.cli import load_experiment, main
from ssvrl.config.loader import config_hash, save_config
from ssvrl.export import FORMAT, read_metadata

OPTIONS = ["backbone.name=small3d", "backbone.width=4", "name=exp"]


def _trained_run(out_dir: Path) -> tuple[Path, torch.nn.Module]:
    """A run folder as ``ssvrl fit`` leaves it: config.yaml and a Lightning-style checkpoint
    whose backbone is NOT the seed's init (changed weights and BN statistics)."""
    cfg = load_experiment(None, [*OPTIONS, f"out_dir={out_dir}"])
    run = out_dir / "exp" / "version_0"
    save_config(cfg, run / "config.yaml")
    torch.manual_seed(123)
    trained = build_backbone("small3d", width=4)
    with torch.no_grad():
        for t in trained.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.1).abs_()  # abs: valid BN variances
    state = {f"backbone.{k}": v for k, v in trained.state_dict().items()}
    state["objective.head.0.weight"] = torch.randn(8, 32)  # not part of the encoder
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 3}, run / "checkpoints" / "last.ckpt")
    return run, trained.eval()


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    run, trained = _trained_run(tmp_path)
    out = tmp_path / "encoder.safetensors"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 0
    model = ssvrl.load_backbone(out)
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = trained(clip), model(clip)
        fresh = build_backbone("small3d", width=4).eval()(clip)
    assert not model.training and torch.equal(got, expected)
    assert not torch.allclose(fresh, expected)  # the file's weights made the difference
    with safe_open(str(out), framework="pt") as f:
        keys = set(f.keys())
    assert keys == set(trained.state_dict())  # backbone only: no head, no "backbone." prefix
    meta = read_metadata(out)
    cfg = load_experiment(str(run / "config.yaml"), [])
    assert meta["format"] == FORMAT and meta["backbone"] == "small3d"
    assert json.loads(meta["backbone_options"]) == {"width": 4}
    assert meta["feature_dim"] == "32" and meta["ssvrl_version"] == ssvrl.__version__
    assert meta["config_hash"] == config_hash(cfg) and meta["checkpoint"] == "last.ckpt"


def test_export_from_config_takes_the_runs_last_checkpoint(tmp_path: Path) -> None:
    run, trained = _trained_run(tmp_path)
    config = tmp_path / "exp.yaml"
    config.write_text("backbone: {name: small3d, width: 4}\nname: exp\n")
    out = tmp_path / "enc.safetensors"
    args = ["export", str(config), f"out_dir={tmp_path}", "--out", str(out)]
    assert main(args) == 0
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(ssvrl.load_backbone(out)(clip), trained(clip))
    random = tmp_path / "r.safetensors"
    assert main([*args[:-2], "--checkpoint", "random", "--out", str(random)]) == 0
    assert read_metadata(random)["checkpoint"] == "random"


def test_load_backbone_refuses_foreign_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(plain))  # safetensors, but not an ssvrl export
    with pytest.raises(ValueError, match="expected 'ssvrl.encoder/1'"):
        ssvrl.load_backbone(plain)
    meta = {"format": FORMAT, "backbone": "os.system", "backbone_options": "{}",
            "feature_dim": "1"}  # fmt: skip
    evil = tmp_path / "evil.safetensors"
    save_file({"w": torch.zeros(1)}, str(evil), metadata=meta)
    with pytest.raises(ValueError, match="'os.system' is not registered"):
        ssvrl.load_backbone(evil)
    with pytest.raises(ValueError, match="not an exported encoder"):
        ssvrl.load_backbone(tmp_path / "x.pt")
