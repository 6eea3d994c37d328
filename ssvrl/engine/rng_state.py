"""Global RNG states in the checkpoint, so a resumed run draws what the uninterrupted one would.

Lightning restores weights, optimizer, schedulers and loop counters, but not the process-wide
generators (``torch``, CUDA, ``numpy.random``, ``random``) that ops such as dropout,
``torch.randperm`` in MoCo's shuffled BN or TEG's offset draw use. :class:`RngState` saves them
for *every* rank (gathered into rank 0's checkpoint, since ranks may draw differently) as
tensors and plain Python values only: checkpoints are loaded with ``weights_only=True``.

They are put back at the first ``on_train_batch_start`` after the restore, not in
``load_state_dict``: between the two, Lightning sets up the strategy and builds the loaders,
and anything drawn there would shift the sequence. The checkpoints that matter are written at
that same hook (``ssvrl.engine.step_checkpoint``), so the resumed run continues from the very
state the interrupted one had. For checkpoints written at an epoch's end the same holds as long
as nothing between that save and the next step draws from the global generators; loaders have
their own generator for that reason (``ssvrl.data.datamodule``).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

__all__ = ["RngState", "capture", "restore"]

log = logging.getLogger("ssvrl")


def capture() -> dict[str, Any]:
    """This process's generator states as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": _plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore(state: dict[str, Any]) -> None:
    """Set this process's generators to ``state`` (from :func:`capture`)."""
    torch.set_rng_state(state["torch"].to(torch.uint8))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in saved])
        else:
            log.warning("resume: %d CUDA generator states saved, %d devices here: CUDA "
                        "generators not restored", len(saved), torch.cuda.device_count())


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (what ``weights_only`` unpickling certainly accepts)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class RngState(pl.Callback):
    """Saves every rank's generator states in the checkpoint; restores this rank's at the
    first training step after a resume (see the module docstring)."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        """``{"ranks": [state of rank 0, state of rank 1, ...]}``; called on every rank by
        ``Trainer.save_checkpoint`` (which all ranks call), so the gather is matched."""
        mine = capture()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ranks: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, mine)
            return {"ranks": ranks}
        return {"ranks": [mine]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("ranks") or []
        if not ranks:
            return
        rank = self._trainer.global_rank if self._trainer is not None else 0
        if len(ranks) != (self._trainer.world_size if self._trainer is not None else 1):
            log.warning("resume: the checkpoint holds RNG states of %d processes, this run has "
                        "%d: every process takes rank 0's (the run is not an exact "
                        "continuation)", len(ranks),
                        self._trainer.world_size if self._trainer is not None else 1)
            rank = 0
        self._pending = ranks[rank]

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is not None:
            restore(self._pending)
            self._pending = None
