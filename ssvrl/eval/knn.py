"""Weighted k-nearest-neighbour classification of frozen features.

The non-parametric classifier of Wu et al. 2018 ("Unsupervised Feature Learning via
Non-Parametric Instance Discrimination", weighted kNN) as used by DINO (Caron et al. 2021):
cosine similarity of L2-normalised features, the ``k`` most similar training samples vote for
their class with weight ``exp(sim / T)``; defaults ``k = 20``, ``T = 0.07``. For videos the
samples are per-video features (clip features averaged), see :mod:`ssvrl.eval.protocol`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_scores(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    num_classes: int,
    *,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores ``(M, num_classes)``: for each test row, the sum of ``exp(sim / T)`` over
    its ``k`` nearest training rows (fewer when there are fewer), per neighbour's class.

    Args:
        train: ``(N, D)`` bank; train_labels: ``(N,)`` in ``[0, num_classes)``;
        test: ``(M, D)`` queries. Rows are L2-normalised here.
        chunk: queries scored at once (bounds the ``(chunk, N)`` similarity matrix).
    """
    bank = F.normalize(train.float(), dim=1)  # (N, D)
    queries = F.normalize(test.float(), dim=1)  # (M, D)
    kk = min(k, bank.shape[0])
    out = torch.zeros(queries.shape[0], num_classes, device=queries.device)
    for start in range(0, queries.shape[0], chunk):
        sim = queries[start : start + chunk] @ bank.T  # (m, N)
        top, idx = sim.topk(kk, dim=1)  # (m, k)
        weight = (top / temperature).exp()  # (m, k)
        out[start : start + chunk].scatter_add_(1, train_labels[idx], weight)  # (m, C)
    return out
