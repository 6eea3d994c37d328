"""Nothing ssvrl reads can run code: malicious pickles, YAML python tags, module-like names.

Each payload is proven live first (a plain unpickle / unsafe YAML load / plugin import DOES
create the marker file), then every ssvrl path that reads such input must refuse it with a
clear error and leave no marker: ``load_weights``, ``backbone.weights`` from YAML, probe
checkpoints (``resolve_checkpoint`` + load), 2D ViT weights for inflation, resume, export;
YAML files and overrides; objective / backbone names and every other string value (only
``plugins:`` imports).
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ssvrl.backbones import build_backbone, load_weights
from ssvrl.cli import load_experiment, main
from ssvrl.config.errors import ConfigError
from ssvrl.config.loader import save_config
from ssvrl.engine.build import build_encoder, build_objective
from ssvrl.engine.evaluate import resolve_checkpoint
from ssvrl.export import load_backbone

TINY = ["backbone.name=small3d", "backbone.width=4", "objective.name=cvrl",
        "objective.proj_hidden=8"]


class Payload:
    """Unpickling this calls ``exec``, which writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _evil_checkpoint(path: Path, marker: Path, state: dict[str, Any] | None = None) -> Path:
    """A Lightning-shaped checkpoint whose unpickling would run the payload."""
    state = dict(state or {"backbone.stages.0.0.weight": torch.zeros(1)})
    torch.save({"state_dict": state, "callbacks": {"x": Payload(marker)}}, path)
    return path


def test_the_pickle_payload_is_live(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)  # what a careless loader does
    assert marker.read_text() == "pwned"


def test_load_weights_refuses_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(ValueError, match="refused to load.*exec"):
        load_weights(build_backbone("small3d", width=4), path)
    disguised = path.rename(tmp_path / "evil.safetensors")  # a pickle under a safe name
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_weights(build_backbone("small3d", width=4), disguised)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_backbone(disguised)
    assert not marker.exists()


def test_backbone_weights_from_yaml_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = _evil_checkpoint(tmp_path / "init.pth", marker)
    config = tmp_path / "exp.yaml"
    config.write_text(f"backbone: {{name: small3d, width: 4, weights: {evil}}}\n")
    cfg = load_experiment(str(config), [])
    with pytest.raises(ValueError, match="refused to load"):
        build_encoder(cfg)
    assert not marker.exists()


def test_probe_checkpoints_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    cfg = load_experiment(None, [*TINY, f"out_dir={tmp_path}", "name=exp"])
    ckpt_dir = tmp_path / "exp" / "version_0" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    _evil_checkpoint(ckpt_dir / "last.ckpt", marker)
    for spec in ("last", str(ckpt_dir / "last.ckpt")):
        path = resolve_checkpoint(cfg, spec)
        assert path is not None
        with pytest.raises(ValueError, match="refused to load"):
            load_weights(build_encoder(cfg), path)
    assert not marker.exists()


def test_vit_2d_weights_for_inflation_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    image_vit = {"patch_embed.proj.weight": torch.zeros(96, 3, 8, 8)}  # looks like 2D timm
    evil = _evil_checkpoint(tmp_path / "vit_2d.pth", marker, image_vit)
    with pytest.raises(ValueError, match="refused to load"):
        build_backbone("vit_micro", str(evil))
    assert not marker.exists()


def test_export_refuses_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    cfg = load_experiment(None, [*TINY, f"out_dir={tmp_path}", "name=exp"])
    run = tmp_path / "exp" / "version_0"
    save_config(cfg, run / "config.yaml")
    (run / "checkpoints").mkdir()
    evil = _evil_checkpoint(run / "checkpoints" / "last.ckpt", marker)
    assert main(["export", str(evil), "--out", str(tmp_path / "e.safetensors")]) == 1
    assert not (tmp_path / "e.safetensors").exists() and not marker.exists()


def test_resume_loads_with_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fit(cfg, ckpt_path)`` hands the path to Lightning, whose ``torch.load`` must get
    ``weights_only=True`` explicitly: left unset, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (set here)
    turns it into a full unpickle."""
    from lightning_fabric.utilities.cloud_io import _load

    from ssvrl.data.bad_videos import BadVideoLog
    from ssvrl.engine import build

    marker = tmp_path / "marker"
    evil = _evil_checkpoint(tmp_path / "resume.ckpt", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

    class Trainer:  # Lightning's checkpoint read, without the training around it
        def fit(self, *args: Any, ckpt_path: str, weights_only: bool | None = None,
                **kwargs: Any) -> None:  # fmt: skip
            _load(ckpt_path, weights_only=weights_only)

    parts = build.PretrainParts(None, None, BadVideoLog(None, 1))  # type: ignore[arg-type]
    monkeypatch.setattr(build, "build_pretrain", lambda cfg, run_dir: parts)
    monkeypatch.setattr(build, "build_trainer", lambda cfg, run_dir, bad: Trainer())
    cfg = load_experiment(None, [*TINY, f"out_dir={tmp_path}"])
    with pytest.raises(pickle.UnpicklingError):
        build.fit(cfg, ckpt_path=str(evil))
    assert not marker.exists()


# ------------------------------------------------------------------------------ YAML
PAYLOADS = [
    "!!python/object/apply:os.system ['touch {m}']",
    "!!python/object/apply:builtins.exec [\"open('{m}', 'w')\"]",
    "!!python/object/new:builtins.exec [\"open('{m}', 'w')\"]",
    "!!python/name:os.system",
]


def test_yaml_payload_is_live(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    yaml.unsafe_load("name: " + PAYLOADS[1].format(m=marker))
    assert marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_yaml_python_tags_are_refused(payload: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    marker = tmp_path / "marker"
    text = payload.format(m=marker)
    config = tmp_path / "evil.yaml"
    config.write_text(f"name: {text}\n")
    with pytest.raises(ConfigError, match="could not determine a constructor for the tag"):
        load_experiment(str(config), [])
    with pytest.raises(ConfigError, match="python/"):
        load_experiment(None, [f"name={text}"])  # the same on the command line
    assert main(["fit", str(config)]) == 2  # usage / config error, before any run
    err = capsys.readouterr().err
    assert "config error" in err and "invalid YAML" in err
    assert not marker.exists()


# ------------------------------------------------------------- names that import code
@pytest.fixture()
def bait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """An importable module that writes a marker when imported."""
    name, marker = f"ssvrl_bait_{tmp_path.name[-8:]}", tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


def _string_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Dotted keys of every str value of a config (dataclasses, recursively)."""
    keys = []
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            keys += _string_keys(value, key + ".")
        elif isinstance(value, str):
            keys.append(key)
    return keys


def test_only_plugins_import_code(bait: tuple[str, Path]) -> None:
    name, marker = bait
    cfg = load_experiment(None, TINY)
    keys = _string_keys(cfg)
    assert {"objective.name", "backbone.name", "data.root"} <= set(keys)
    for key in keys:  # every string value, one at a time, set to the module (and Class) name
        for value in (name, f"{name}.Thing"):
            try:
                cfg = load_experiment(None, [*TINY, f"{key}={value}"])
                build_objective(cfg, build_encoder(cfg).num_features)
            except Exception:  # noqa: BLE001, S112  (refusing is fine; importing is not)
                continue
    assert not marker.exists() and name not in sys.modules
    with pytest.raises(ConfigError, match="unknown objective"):
        load_experiment(None, [*TINY, f"objective.name={name}.Thing"])
    load_experiment(None, [*TINY, f"plugins=[{name}]"])  # the one door, and it does import
    assert marker.exists()
