"""InfoNCE (NT-Xent) with negatives gathered across processes.

CVRL (Qian et al., CVPR 2021), Sec. 3.1, Eq. 1: for N videos, two clips each give 2N embeddings;
for the positive pair (i, j) the loss is ``-log exp(sim(z_i, z_j)/tau) / sum_{k != i}
exp(sim(z_i, z_k)/tau)`` over the 2N - 1 other clips, averaged over all 2N anchors. With P
processes the candidates are the 2NP clips of the global batch, as in SimCLR's large-batch
training (Chen et al., 2020, Sec. 2) which CVRL follows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssvrl.losses.precision import MASKED_LOGIT, check_temperature, float32_math, unit_rows
from ssvrl.utils.dist import gather_no_grad, gather_with_grad, rank


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    video_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between two views.

    Args:
        z1, z2: ``(B, D)`` embeddings of view 1 and view 2 of the same B videos (row i of z1 and
            row i of z2 are positives). Normalised here; need not be unit length.
        temperature: tau in Eq. 1 (CVRL uses 0.1).
        video_ids: optional ``(B,)`` integer id of the video each row came from, unique across
            processes. Rows that share an id (repeated augmentation draws several samples per
            video) are not negatives of each other: those logits are masked like self-pairs.

    Returns:
        Scalar: the mean loss over the 2B local anchors; against every clip of the global
        batch. Equal, on P processes, to the 1-process loss on the concatenated batch.
    """
    if z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    check_temperature(temperature)
    with float32_math(z1):  # similarities, masks and softmax in float32 under any autocast
        return _info_nce(unit_rows(z1, dim=1), unit_rows(z2, dim=1), temperature, video_ids)


def _info_nce(
    n1: torch.Tensor, n2: torch.Tensor, temperature: float, video_ids: torch.Tensor | None
) -> torch.Tensor:
    """:func:`info_nce` on unit float32 rows ``n1``, ``n2`` (B, D)."""
    B = n1.shape[0]
    z = torch.cat([n1, n2])  # (2B, D) local anchors, view-major
    zg1, zg2 = gather_with_grad(n1), gather_with_grad(n2)  # (P*B, D) each
    cand = torch.cat([zg1, zg2])  # (2PB, D) candidates, view-major
    PB = zg1.shape[0]
    logits = z @ cand.T / temperature  # (2B, 2PB)
    local = torch.arange(B, device=z.device) + rank() * B  # this rank's rows inside a view block
    self_idx = torch.cat([local, local + PB])  # (2B,) where each anchor meets itself
    pos_idx = torch.cat([local + PB, local])  # (2B,) its other view
    # Self-similarity masked with a large finite negative (-inf would give NaN gradients).
    # Masks from comparisons, not `mask[rows, idx] = True`: that assignment copies the Python
    # bool to the device, a blocking copy (a host sync) every step on a GPU.
    cols = torch.arange(logits.shape[1], device=z.device)  # (2PB,)
    mask = self_idx[:, None] == cols[None, :]  # (2B, 2PB) each anchor's own column
    if video_ids is not None:
        ids = video_ids.to(z.device).long().view(-1)  # (B,)
        if ids.shape[0] != B:
            raise ValueError(f"video_ids must have {B} entries, got {ids.shape[0]}")
        cand_ids = gather_no_grad(ids).repeat(2)  # (2PB,) view-major like cand
        same = ids.repeat(2)[:, None] == cand_ids[None, :]  # (2B, 2PB)
        same &= pos_idx[:, None] != cols[None, :]  # the positive stays
        mask |= same
    return F.cross_entropy(logits.masked_fill(mask, MASKED_LOGIT), pos_idx)
