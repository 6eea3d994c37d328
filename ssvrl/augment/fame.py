"""FAME: foreground-background merging (Ding et al., "Motion-aware Contrastive Video
Representation Learning via Foreground-background Merging", CVPR 2022, Sec. 3.2).

No detector: the moving foreground of a clip is found from frame differences and colour
statistics, then pasted onto the background of ANOTHER video of the batch, so that a view keeps
its motion but loses its scene and the representation cannot rely on the static background.

Mask, per clip, batched on the device (one static mask shared by all frames, Sec. 3.2):

1. motion: frame differences summed over the clip, box-smoothed -> (B, H, W);
2. seed regions: the ``seed_fg`` fraction of pixels with the most motion is foreground, the
   ``seed_bg`` fraction with the least is background;
3. colour statistics: joint RGB histograms (``bins`` levels per channel) of the two seed
   regions over all frames; each pixel's foreground likelihood is ``p_fg / (p_fg + p_bg)`` of
   its colour, averaged over the frames;
4. the ``area`` fraction of pixels (default 0.5) with the highest likelihood is the
   foreground (ties broken by motion, then by position), so the kept area is exact.

Merge: ``out[b] = mask[b] * x[b] + (1 - mask[b]) * x[partner[b]]``; partners are a random
cyclic permutation (no clip keeps its own background) drawn from the batch's seeds, so the
result is a function of the clips and their seeds only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ssvrl.augment.motion import clip_motion, frame_difference


@dataclass(frozen=True)
class FameConfig:
    """FAME's mask parameters (YAML-settable)."""

    area: float = 0.5  # foreground area ratio kept (the paper's beta; 0.5 by default)
    seed_fg: float = 0.1  # fraction of most-moving pixels seeding the foreground histogram
    seed_bg: float = 0.3  # fraction of least-moving pixels seeding the background histogram
    bins: int = 8  # colour levels per channel: bins**3 histogram cells
    smooth: int = 5  # box filter size on the motion map before seeding (odd; 1 = none)

    def __post_init__(self) -> None:
        ok = (
            0 <= self.area <= 1
            and 0 < self.seed_fg < 1
            and 0 < self.seed_bg < 1
            and self.seed_fg + self.seed_bg <= 1
            and self.bins >= 1
            and self.smooth >= 1
            and self.smooth % 2 == 1
        )
        if not ok:
            raise ValueError(f"invalid FameConfig {self}")


def _unit(x: Tensor) -> Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def _colour_bins(x: Tensor, bins: int) -> Tensor:
    """Joint colour cell of every pixel: (B, 3, T, H, W) in [0, 1] -> (B, T*H*W) int64."""
    q = (x * bins).long().clamp_(0, bins - 1)  # (B, 3, T, H, W)
    cell = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]  # (B, T, H, W)
    return cell.flatten(1)


def _histogram(cells: Tensor, weight: Tensor, n: int) -> Tensor:
    """Normalised per-clip histograms (B, n) of ``cells`` (B, N) weighted by ``weight`` (B, N)."""
    hist = torch.zeros(cells.shape[0], n, device=cells.device, dtype=weight.dtype)
    hist.scatter_add_(1, cells, weight)
    return hist / hist.sum(dim=1, keepdim=True).clamp_min(1e-12)


def _top_k_mask(score: Tensor, k: int) -> Tensor:
    """(B, N) bool with exactly ``k`` True per row at the highest scores (stable: lower index
    wins ties, identical on every device)."""
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    mask = torch.zeros_like(score, dtype=torch.bool)
    return mask.scatter_(1, order[:, :k], True)


@torch.no_grad()
def fame_mask(x: Tensor, cfg: FameConfig | None = None) -> Tensor:
    """Foreground mask of each clip: uint8 / float (B, 3, T, H, W) -> bool (B, 1, 1, H, W).

    Exactly ``round(area * H * W)`` pixels are True per clip; see the module docstring.
    """
    cfg = cfg or FameConfig()
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"fame_mask expects (B, 3, T, H, W), got {tuple(x.shape)}")
    x = _unit(x)
    B, _, T, H, W = x.shape
    n = H * W
    motion = clip_motion(frame_difference(x))  # (B, H, W)
    if cfg.smooth > 1:
        r = cfg.smooth // 2
        motion = F.avg_pool2d(motion[:, None], cfg.smooth, 1, r, count_include_pad=False)[:, 0]
    motion = motion.flatten(1)  # (B, N)
    n_fg, n_bg = max(1, round(cfg.seed_fg * n)), max(1, round(cfg.seed_bg * n))
    seed_fg = _top_k_mask(motion, n_fg).float()  # (B, N)
    seed_bg = _top_k_mask(-motion, n_bg).float()
    cells = _colour_bins(x, cfg.bins)  # (B, T*N)
    per_frame = (B, T * n)
    n_cells = cfg.bins**3
    hist_fg = _histogram(cells, seed_fg.repeat(1, T).expand(per_frame), n_cells)  # (B, cells)
    hist_bg = _histogram(cells, seed_bg.repeat(1, T).expand(per_frame), n_cells)
    p_fg, p_bg = hist_fg.gather(1, cells), hist_bg.gather(1, cells)  # (B, T*N)
    likelihood = (p_fg / (p_fg + p_bg).clamp_min(1e-12)).view(B, T, n).mean(dim=1)  # (B, N)
    # Motion rank as a tie-break, scaled below the smallest likelihood step that matters.
    peak = motion.amax(dim=1, keepdim=True).clamp_min(1e-12)
    score = likelihood + 1e-4 * motion / peak
    return _top_k_mask(score, round(cfg.area * n)).view(B, 1, 1, H, W)


def fame_partners(seeds: Tensor | Sequence[int]) -> Tensor:
    """(B,) int64 background donors: a random cyclic permutation seeded by all of ``seeds``.

    Sattolo's algorithm: a uniform single cycle, so ``partner[b] != b`` whenever B > 1.
    """
    values = [int(s) % 2**63 for s in torch.as_tensor(seeds).tolist()]
    perm = np.arange(len(values))
    rng = np.random.default_rng(np.random.SeedSequence(values or [0]))
    for i in range(len(values) - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: Sattolo (j <= i would be Fisher-Yates)
        perm[i], perm[j] = perm[j], perm[i]
    return torch.from_numpy(perm).long()


def fame_merge(x: Tensor, mask: Tensor, partners: Tensor) -> Tensor:
    """Foreground of clip b over the background of clip ``partners[b]``; dtype kept.

    ``x``: (B, C, T, H, W); ``mask``: bool (B, 1, 1 or T, H, W); ``partners``: (B,) int64.
    """
    donors = x.index_select(0, partners.to(x.device, non_blocking=True))  # (B, C, T, H, W)
    return torch.where(mask.to(x.device), x, donors)


def fame(x: Tensor, seeds: Tensor | Sequence[int], cfg: FameConfig | None = None
         ) -> tuple[Tensor, Tensor, Tensor]:
    """Mask, partners and merge in one call: returns (merged x, bool mask, partners)."""
    mask = fame_mask(x, cfg)
    partners = fame_partners(seeds)
    return fame_merge(x, mask, partners), mask, partners
