"""A collapse watch for every objective: the spread of the backbone's embeddings.

Self-supervised objectives can reach a low loss by mapping every clip to (nearly) the same
embedding (DINO, Caron et al., ICCV 2021, Sec. 5.3; SimSiam, Chen & He, CVPR 2021, Sec. 4.1,
who monitor exactly this: the std of the l2-normalised output). The measure here is the same:
the anchor features ``ObjectiveOutput.features`` (B, D) of each step, l2-normalised, their std
over the batch per dimension, averaged over dimensions and multiplied by ``sqrt(D)``. Unit
vectors spread evenly over the sphere have a per-dimension std of ``1/sqrt(D)``, so the logged
``train/embed_std`` is ~1 for a well spread batch and 0 when every clip has the same embedding,
whatever the backbone's width. Post-ReLU CNN features live in one orthant and sit lower than 1
when healthy (0.3-0.6 measured: small3d on the synthetic data), hence a default threshold far
below that.

Per step the value is only logged (a device tensor, no host sync); its running maximum over the
epoch stays on the device. At the epoch's end that maximum is reduced over ranks (MAX) and read
once; a warning is logged when it stayed below ``trainer.collapse_warn_std`` for the whole
epoch. Objectives that return no ``features`` (out-of-tree ones may) are not watched.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ssvrl.utils.dist import is_dist

log = logging.getLogger("ssvrl")

# What to try, per objective family; the generic advice applies to all.
GENERIC_HINTS = (
    "a lower optim.lr or a longer optim.warmup_epochs; check that the views differ (augmentation "
    "on, two clips per video), else the task is solved by a constant"
)
HINTS = {
    "svt": "a lower teacher_temp, a higher momentum, norm_last_layer: true (DINO Sec. 5.3)",
    "moco": "a larger queue_size or a lower temperature",
    "cvrl": "a larger batch (more negatives) or a lower temperature",
    "simclr": "a larger batch (more negatives) or a lower temperature",
}


def embedding_spread(features: torch.Tensor) -> torch.Tensor:
    """0-d: mean over dims of the batch std of the l2-normalised ``(B, D)`` rows, x sqrt(D).

    ~1 for rows spread uniformly over the unit sphere, 0 for identical rows; needs B >= 2."""
    z = F.normalize(features.detach().float(), dim=1)  # (B, D)
    return z.std(dim=0).mean() * math.sqrt(z.shape[1])


class CollapseWatch:
    """Per-step spread, per-epoch verdict; ``warn_below <= 0`` only logs the value."""

    def __init__(self, objective: str, warn_below: float) -> None:
        if not 0.0 <= warn_below < 1.0:
            raise ValueError(
                f"trainer.collapse_warn_std must be in [0, 1) (x sqrt(D) units, 0: no warning), "
                f"got {warn_below}"
            )
        self.objective, self.warn_below = objective, warn_below
        self._epoch_max: torch.Tensor | None = None
        self.warnings = 0

    def observe(self, features: torch.Tensor | None) -> torch.Tensor | None:
        """The step's spread (to log), or None without features or with one row."""
        if features is None or features.ndim != 2 or features.shape[0] < 2:
            return None
        spread = embedding_spread(features)
        # fmax ignores NaN: a skipped non-finite step does not hide a collapse.
        self._epoch_max = (
            spread
            if self._epoch_max is None
            else torch.fmax(self._epoch_max.to(spread.device), spread)  # .to: after resume()
        )
        return spread

    def epoch_max(self) -> float | None:
        """This rank's maximum so far in the epoch (a host read; for checkpoints)."""
        return None if self._epoch_max is None else float(self._epoch_max)

    def resume(self, value: float | None) -> None:
        """Continue an epoch whose maximum so far was ``value`` (from :meth:`epoch_max`)."""
        self._epoch_max = None if value is None else torch.tensor(float(value))

    def end_epoch(self, epoch: int) -> float | None:
        """Reduce the epoch's maximum over ranks (every rank must call this), warn on rank 0
        if it is below the threshold; returns it (None when nothing was observed anywhere)."""
        if self.warn_below <= 0:
            self._epoch_max = None
            return None
        value = self._epoch_max
        self._epoch_max = None
        if is_dist():  # every rank joins, also one without an observation (-1: none)
            device = value.device if value is not None else _device()
            t = value.detach().clone() if value is not None else torch.full((), -1.0, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            value = t
        if value is None:
            return None
        best = float(value)  # the one host sync of the watch, once per epoch
        if best < 0 or math.isnan(best):
            return None
        if best < self.warn_below and (not is_dist() or dist.get_rank() == 0):
            self.warnings += 1
            log.warning(self.message(epoch, best))
        return best

    def message(self, epoch: int, best: float) -> str:
        hint = HINTS.get(self.objective)
        todo = f"{hint}; or {GENERIC_HINTS}" if hint else GENERIC_HINTS
        return (
            f"objective {self.objective!r} may have collapsed: in epoch {epoch} the embedding "
            f"spread train/embed_std never exceeded {best:.4f} (threshold "
            f"trainer.collapse_warn_std={self.warn_below}; ~1 = spread over the sphere, 0 = "
            f"every clip the same embedding). Try {todo}."
        )


def _device() -> torch.device:
    """The device collectives use: CUDA under NCCL, else CPU."""
    if dist.get_backend() == "nccl" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
