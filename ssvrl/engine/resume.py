"""Resuming a run: which checkpoint (``--resume PATH|auto``) and whether the config still fits.

Every checkpoint carries the run's resolved config (plain types, top-level key
:data:`CONFIG_KEY`, written by :class:`ResumeInfo`). ``fit(cfg, ckpt)`` compares it with the
config it was given and refuses, listing every differing key as ``old -> new``, unless forced
(``--force-resume``): a resume is meant to produce what the interrupted run would have.

Keys in :data:`SAFE_KEYS` may differ without force, because they cannot change the weights:

- ``name``, ``out_dir``: where the new ``version_N`` folder goes;
- ``trainer.progress_bar``, ``trainer.log_every_n_steps``: what is printed and logged;
- ``trainer.checkpoint_every_n_epochs``, ``trainer.checkpoint_every_n_steps``: when
  checkpoints are written (writing one draws no random number and changes no state);
- ``data.num_workers``: samples are functions of ``(seed, epoch, index)`` and the sampler runs
  in the main process, so they do not depend on the number of workers (contract 5);
- ``data.cache_dir``: where the index cache is kept;
- ``online_probe.every_n_epochs``, ``.val_clips``, ``.batch_size``: validation only (backbone
  in eval mode, no gradients, its own loader generator): what is measured, not what is trained;
- ``probe.*``, ``finetune.*``, ``extract.*``: sections ``ssvrl fit`` never reads.

Not safe, on purpose: ``trainer.max_epochs`` / ``max_steps``, even when only extended. The
learning-rate schedule (warm-up and cosine over ``estimated_stepping_batches``) and the
objectives' schedules (EMA momentum, teacher temperature, weight decay) are functions of the
total number of steps, so a longer run changes every step after the resume point: the result
is a different run from the one that was interrupted (pass ``--force-resume`` to do it anyway).
Likewise the world size (``devices``, ``num_nodes``): it changes the global batch and the
sharding. Keys present on one side only (a field added to ssvrl since the checkpoint) are
reported but do not block: a new field's default keeps the old behaviour.

A checkpoint without a stored config (written before this existed) is resumed with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from ssvrl.config.loader import ConfigError

__all__ = [
    "CONFIG_KEY", "SAFE_KEYS", "ResumeInfo", "check_resume", "config_changes",
    "latest_checkpoint", "plain_config", "resolve_resume",
]

log = logging.getLogger("ssvrl")
CONFIG_KEY = "ssvrl_config"
SAFE_KEYS = (
    "name", "out_dir", "trainer.progress_bar", "trainer.log_every_n_steps",
    "trainer.checkpoint_every_n_epochs", "trainer.checkpoint_every_n_steps", "data.num_workers",
    "data.cache_dir", "online_probe.every_n_epochs", "online_probe.val_clips",
    "online_probe.batch_size", "probe.", "finetune.", "extract.",
)  # fmt: skip


def plain_config(cfg: Any) -> dict[str, Any]:
    """The resolved config as nested dicts, lists and scalars (``weights_only``-loadable)."""
    tree = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    assert isinstance(tree, dict)
    return {str(k): v for k, v in tree.items()}


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    found: dict[str, Any] = {}
    for name, value in tree.items():
        found.update(_leaves(value, f"{prefix}.{name}" if prefix else str(name)))
    return found


def _safe(key: str) -> bool:
    return any(key == s or (s.endswith(".") and key.startswith(s)) for s in SAFE_KEYS)


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` per differing leaf; a key on one side only has ``"<absent>"``."""
    a, b = _leaves(old), _leaves(new)
    keys = [*a, *(k for k in b if k not in a)]
    pairs = [(k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in keys]
    return [(k, old, new) for k, old, new in pairs if old != new]


class ResumeInfo(pl.Callback):
    """Writes the run's config into every checkpoint, under :data:`CONFIG_KEY`; when a
    checkpoint of an older ssvrl (no data position) is loaded, gives the datamodule the
    position Lightning's loop state implies."""

    def __init__(self, cfg: Any) -> None:
        self.config = plain_config(cfg)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        fill = getattr(getattr(trainer, "datamodule", None), "position_from_loops", None)
        if fill is not None:
            fill(checkpoint, trainer.world_size)


def stored_config(path: Path) -> dict[str, Any] | None:
    """The config a checkpoint was written with (None: an older checkpoint without one).

    Read with ``weights_only=True`` and ``mmap=True``: only the pickled structure is parsed,
    the tensors are mapped, not read. A file that is not a checkpoint raises as torch does."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:  # mmap needs the zip format of torch >= 1.6; read it whole
        if "mmap" not in str(err):
            raise
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = checkpoint.get(CONFIG_KEY) if isinstance(checkpoint, dict) else None
    return config if isinstance(config, dict) else None


def check_resume(cfg: Any, path: Path, force: bool = False) -> None:
    """Refuse (ConfigError, exit code 2) to resume ``path`` with a config that changes results
    unless ``force``; log the differences that are allowed. See the module docstring."""
    if not path.is_file():
        raise ConfigError(f"resume: checkpoint not found: {path}")
    old = stored_config(path)
    if old is None:
        log.warning("resume: %s holds no config (written by an older ssvrl): cannot check that "
                    "the config is unchanged; resuming with the given one", path)
        return
    changes = config_changes(old, plain_config(cfg))
    one_sided = [c for c in changes if "<absent>" in (c[1], c[2])]
    blocking = [c for c in changes if c not in one_sided and not _safe(c[0])]
    lines = [f"  {k}: {_show(a)} -> {_show(b)}" for k, a, b in blocking]
    if blocking and not force:
        raise ConfigError(
            f"resume: the config differs from the one {path} was trained with in "
            f"{len(blocking)} key(s) that change results:\n" + "\n".join(lines) + "\nresume "
            "with the checkpoint's values, or pass --force-resume to continue with the new ones"
        )
    if blocking:
        log.warning("resume with --force-resume: config changed since %s:\n%s", path,
                    "\n".join(lines))
    rest = [c for c in changes if c not in blocking]
    if rest:
        log.info("resume: config differences that do not change results: %s",
                 "; ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, a, b in rest))


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)


def latest_checkpoint(folder: Path) -> Path | None:
    """The ``last.ckpt`` of the highest-numbered ``version_N`` under ``folder`` that has one."""
    versions = [p for p in folder.glob("version_*") if p.name.split("_", 1)[1].isdigit()]
    for version in sorted(versions, key=lambda p: int(p.name.split("_", 1)[1]), reverse=True):
        ckpt = version / "checkpoints" / "last.ckpt"
        if ckpt.is_file():
            return ckpt
    return None


def resolve_resume(cfg: Any, value: str) -> Path:
    """``--resume`` to a checkpoint path: ``auto`` is the newest ``last.ckpt`` under
    ``<out_dir>/<name>/version_*/checkpoints/``; anything else must be an existing file."""
    if value == "auto":
        base = Path(cfg.out_dir) / cfg.name
        found = latest_checkpoint(base)
        if found is None:
            raise ConfigError(
                f"--resume auto: no {base}/version_*/checkpoints/last.ckpt to resume from "
                "(check out_dir and name, or start without --resume)"
            )
        return found
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"--resume: checkpoint not found: {value}")
    return path
