"""Export a trained encoder as one ``.safetensors`` file and rebuild it from that file alone.

``ssvrl export CONFIG_OR_CHECKPOINT --out encoder.safetensors`` writes the backbone's state dict
(no heads, teachers, queues or optimizer state) with string metadata that says how to rebuild
it: the registered backbone name, its constructor options (JSON), the feature dimension, the
ssvrl version and the hash of the experiment config it was trained with.
:func:`load_backbone` reads that file without unpickling anything: safetensors holds raw
tensors and a JSON header, the backbone is looked up by name in the registry (an unknown name
is refused; nothing is imported from the file), and the weights load strictly.

Why safetensors and not a pickled checkpoint: ``torch.load`` of an untrusted pickle can run
arbitrary code (``weights_only=True`` narrows that, safetensors removes it), and a consumer of
the encoder should not need ssvrl's training stack, Lightning or the config to load it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ssvrl.backbones.base import VideoBackbone
    from ssvrl.config.schema import ExperimentConfig

log = logging.getLogger("ssvrl")

FORMAT = "ssvrl.encoder/1"
_JSON_SCALARS = (str, int, float, bool, type(None))


def export_encoder(
    cfg: ExperimentConfig, checkpoint: Path | None, out: Path
) -> dict[str, str]:
    """Write ``checkpoint``'s backbone (``None``: the seed's random init) to ``out``.

    The backbone is built from ``cfg`` without ``backbone.weights`` (the checkpoint replaces
    them), so the file holds exactly what the run trained. Returns the metadata written.
    """
    from safetensors.torch import save_file

    from ssvrl import __version__
    from ssvrl.backbones.base import load_weights
    from ssvrl.config.loader import config_hash
    from ssvrl.engine.build import build_encoder

    torch.manual_seed(cfg.seed)
    backbone = build_encoder(replace(cfg, backbone=replace(cfg.backbone, weights=None)))
    if checkpoint is not None:
        load_weights(backbone, checkpoint)
    options = backbone_options(backbone)
    metadata = {
        "format": FORMAT,
        "backbone": cfg.backbone.name,
        "backbone_options": json.dumps(options, sort_keys=True),
        "feature_dim": str(backbone.num_features),
        "ssvrl_version": __version__,
        "config_hash": config_hash(cfg),
        "objective": cfg.objective.name,
        "checkpoint": checkpoint.name if checkpoint is not None else "random",
    }
    # Clones: safetensors refuses tensors that share storage (tied or viewed parameters).
    state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=metadata)
    log.info("exported %s (%d tensors, %s features) to %s", metadata["backbone"], len(state),
             metadata["feature_dim"], out)
    return metadata


def backbone_options(backbone: torch.nn.Module) -> dict[str, Any]:
    """The constructor options :func:`~ssvrl.backbones.base.build_backbone` recorded on the
    model; JSON scalars only (what the metadata can carry)."""
    options = dict(getattr(backbone, "build_options", {}))
    bad = {k: v for k, v in options.items() if not isinstance(v, _JSON_SCALARS)}
    if bad:
        raise ValueError(f"backbone options {bad} cannot be written as JSON metadata")
    return options


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an exported encoder; ValueError for any other file."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        raise ValueError(f"{path}: not an exported encoder (a .safetensors file from ssvrl export)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as err:  # noqa: BLE001  (safetensors raises its own error types)
        raise ValueError(f"{path}: not a readable safetensors file: {err}") from err
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path}: metadata format {meta.get('format')!r}, expected {FORMAT!r} (write the "
            "file with `ssvrl export`)"
        )
    return meta


def load_backbone(path: str | Path) -> VideoBackbone:
    """Rebuild the backbone an ``ssvrl export`` file describes and load its weights.

    Returns the model on the CPU in eval mode. Raises ValueError when the file is not an
    export, names an unknown backbone (no code is imported to find it) or its weights or
    feature dimension do not fit the rebuilt model.
    """
    from ssvrl.backbones import BACKBONES, build_backbone

    meta = read_metadata(path)
    name = meta["backbone"]
    if name not in BACKBONES:
        raise ValueError(
            f"{path}: backbone {name!r} is not registered (known: {', '.join(BACKBONES.names())});"
            " a plugin backbone must be imported before loading"
        )
    options = json.loads(meta.get("backbone_options", "{}"))
    if not isinstance(options, dict) or not all(
        isinstance(v, _JSON_SCALARS) for v in options.values()
    ):
        raise ValueError(f"{path}: backbone_options must be a JSON object of scalars")
    model = build_backbone(name, str(path), **options)
    if str(model.num_features) != meta.get("feature_dim"):
        raise ValueError(
            f"{path}: rebuilt {name} has {model.num_features} features, the file says "
            f"{meta.get('feature_dim')}"
        )
    return model.eval()


def export_source(target: str, overrides: list[str], checkpoint: str | None
                  ) -> tuple[ExperimentConfig, Path | None]:
    """``(config, checkpoint)`` for ``ssvrl export TARGET``.

    A ``.yaml`` / ``.yml`` TARGET is the experiment config, its checkpoint ``checkpoint``
    (default ``"last"`` of that run; ``"random"``: none). Any other TARGET is a checkpoint of
    a run, whose ``config.yaml`` (written by ``ssvrl fit`` into the run folder) gives the
    config.
    """
    from ssvrl.cli import load_experiment
    from ssvrl.config.loader import ConfigError
    from ssvrl.engine.evaluate import resolve_checkpoint

    path = Path(target)
    if path.suffix in (".yaml", ".yml"):
        cfg = load_experiment(target, overrides)
        return cfg, resolve_checkpoint(cfg, checkpoint or "last")
    if checkpoint is not None:
        raise ConfigError("--checkpoint goes with a CONFIG; TARGET is already a checkpoint")
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    run_config = path.resolve().parent.parent / "config.yaml"  # <run>/checkpoints/x.ckpt
    if not run_config.is_file():
        raise ConfigError(
            f"{run_config} not found: pass the experiment config instead "
            f"(ssvrl export CONFIG --checkpoint {path})"
        )
    return load_experiment(str(run_config), overrides), path
