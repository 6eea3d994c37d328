"""MCL's motion-focused spatial crop (Li et al., "Motion-Focused Contrastive Learning of Video
Representations", ICCV 2021, Sec. 3.2 "motion-focused video augmentation").

MCL crops where the video moves. Fitted to the host-seeded design: every clip draws ``K``
candidate random-resized crops from its own seed (candidate 0 IS the clip's ordinary crop, the
others from seeds derived from it), the device scores each candidate by the mean motion inside
it (an integral image of the clip's motion map, so the cost does not grow with the crop size),
and with probability ``p`` (a per-clip seeded draw) the clip takes the highest-scoring
candidate, otherwise candidate 0. The flip and colour parameters stay those of the clip's seed.
The choice is a function of (clip content, seed) only. One (B,) index is read back to the host
per view and step (the crop parameters live on the host).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ssvrl.augment.params import ClipParams, _as_seeds, sample_params
from ssvrl.augment.recipe import AugmentConfig

_SALT = 1_000_003  # candidate k of seed s uses seed (s * _SALT + k) mod 2**63 (k = 0: s itself)


def derived_seeds(seeds: Tensor | Sequence[int], k: int) -> list[int]:
    """Seeds of candidate ``k`` (k = 0 returns ``seeds`` unchanged)."""
    return [s if k == 0 else (s * _SALT + k) % 2**63 for s in _as_seeds(seeds)]


def box_density(motion: Tensor, crops: Tensor) -> Tensor:
    """Mean of ``motion`` (B, H, W) inside fractional boxes ``crops`` (B, K, 4) -> (B, K).

    Boxes (y0, x0, h, w) are rounded to whole pixels, at least one pixel each.
    """
    B, H, W = motion.shape
    ii = torch.zeros(B, H + 1, W + 1, device=motion.device, dtype=torch.float64)
    ii[:, 1:, 1:] = motion.double().cumsum(1).cumsum(2)  # integral image
    c = crops.to(motion.device, torch.float64, non_blocking=True)
    y0 = (c[..., 0] * H).round().long().clamp(0, H - 1)  # (B, K)
    x0 = (c[..., 1] * W).round().long().clamp(0, W - 1)
    y1 = torch.maximum((c[..., 0] + c[..., 2]) * H, y0 + 1.0).round().long().clamp(max=H)
    x1 = torch.maximum((c[..., 1] + c[..., 3]) * W, x0 + 1.0).round().long().clamp(max=W)
    flat = ii.flatten(1)  # (B, (H+1)*(W+1))

    def at(y: Tensor, x: Tensor) -> Tensor:
        return flat.gather(1, y * (W + 1) + x)

    total = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)
    return (total / ((y1 - y0) * (x1 - x0)).double()).float()


def motion_focused_params(
    cfg: AugmentConfig,
    seeds: Tensor | Sequence[int],
    motion: Tensor,
    candidates: int = 8,
    p: float = 0.8,
) -> ClipParams:
    """The clips' params with the crop replaced by the most moving of ``candidates`` crops
    (with probability ``p`` per clip). ``motion``: (B, H, W) on any device, e.g. the
    time-summed frame differences of the clips being cropped."""
    if candidates < 1 or not 0 <= p <= 1:
        raise ValueError(f"need candidates >= 1 and 0 <= p <= 1, got {candidates}, {p}")
    hw = (int(motion.shape[-2]), int(motion.shape[-1]))
    params = sample_params(cfg, seeds, hw)
    crops = torch.stack(
        [params.crop]
        + [sample_params(cfg, derived_seeds(seeds, k), hw).crop for k in range(1, candidates)],
        dim=1,
    )  # (B, K, 4) on the host
    best = box_density(motion, crops).argmax(dim=1).cpu()  # (B,): the one read-back
    u = torch.tensor(
        [torch.rand(1, generator=torch.Generator().manual_seed(s)).item()
         for s in derived_seeds(seeds, candidates)]
    )
    choice = torch.where(u < p, best, torch.zeros_like(best))
    params.crop = crops[torch.arange(crops.shape[0]), choice]
    return params
