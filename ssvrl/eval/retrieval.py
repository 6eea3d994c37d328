"""Nearest-neighbour video retrieval, Recall@k.

The protocol of CoCLR (Han et al., NeurIPS 2020) and FAME (Ding et al., CVPR 2022), from Xu et
al.'s VCOP (CVPR 2019): every test video is a query, the training videos are the gallery, a
video is the average of its clip features; features are centred by the gallery mean and
L2-normalised, ranked by cosine similarity, and R@k is the percentage of queries with at least
one video of their class among the top ``k`` results.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RECALL_KS = (1, 5, 10, 20, 50)


@torch.no_grad()
def retrieval_recall(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: tuple[int, ...] = RECALL_KS,
    *,
    chunk: int = 1024,
) -> dict[str, float]:
    """``{"R@1": %, "R@5": %, ...}`` for ``query`` (M, D) against ``gallery`` (N, D).

    A ``k`` beyond the gallery size counts the whole gallery.
    """
    mean = gallery.float().mean(dim=0, keepdim=True)  # (1, D)
    q = F.normalize(query.float() - mean, dim=1)  # (M, D)
    g = F.normalize(gallery.float() - mean, dim=1)  # (N, D)
    kmax = min(max(ks), g.shape[0])
    hits = []
    for start in range(0, q.shape[0], chunk):
        sim = q[start : start + chunk] @ g.T  # (m, N)
        idx = sim.topk(kmax, dim=1).indices  # (m, kmax), most similar first
        hits.append(gallery_labels[idx] == query_labels[start : start + chunk, None])
    hit = torch.cat(hits)  # (M, kmax) bool
    return {
        f"R@{k}": 100.0 * hit[:, : min(k, kmax)].any(dim=1).float().mean().item() for k in ks
    }
