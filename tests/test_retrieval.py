"""Retrieval R@k (CoCLR / FAME protocol): known answers on hand-made embeddings."""

from __future__ import annotations

import pytest
import torch

from ssvrl.eval.retrieval import retrieval_recall

# Gallery mean (10, 0); centred: g0 (0, 2), g1 (0, -2), g2 (2, 0), g3 (-2, 0).
GALLERY = torch.tensor([[10.0, 2.0], [10.0, -2.0], [12.0, 0.0], [8.0, 0.0]])
GALLERY_LABELS = torch.tensor([0, 1, 1, 0])
# q0 centred (0.5, 5): ranking g0(0), g2(1), g3(0), g1(1); its class 1 first appears at rank 2.
# q1 centred (-3, -1): ranking g3(0), g1(1), g0(0), g2(1); its class 0 is at rank 1.
QUERIES = torch.tensor([[10.5, 5.0], [7.0, -1.0]])
QUERY_LABELS = torch.tensor([1, 0])


def test_known_recalls_after_centring() -> None:
    r = retrieval_recall(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, ks=(1, 2, 3, 5))
    assert r == {"R@1": 50.0, "R@2": 100.0, "R@3": 100.0, "R@5": 100.0}  # R@5: whole gallery


def test_common_offset_is_removed_by_the_gallery_mean() -> None:
    """A large shared offset would dominate raw cosine similarity; centring removes it."""
    shift = torch.tensor([[300.0, -200.0]])
    ref = retrieval_recall(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, ks=(1, 2))
    shifted = retrieval_recall(QUERIES + shift, QUERY_LABELS, GALLERY + shift, GALLERY_LABELS,
                               ks=(1, 2))
    assert shifted == ref


def test_a_hit_counts_once_per_query() -> None:
    """R@k is the share of queries with at least one same-class video, not a precision."""
    gallery = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [-0.9, -0.1]])
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[1.0, 0.05], [1.0, -0.05], [-1.0, 0.02]])
    r = retrieval_recall(queries, torch.tensor([0, 1, 1]), gallery, labels, ks=(1, 2, 3))
    # centred by mean (0, 0): q0 -> g0/g1 (hit at 1); q1 -> class 1 only at ranks 3-4;
    # q2 -> g2 (hit at 1)
    assert r == {"R@1": pytest.approx(200 / 3), "R@2": pytest.approx(200 / 3), "R@3": 100.0}


def test_chunked_equals_whole() -> None:
    g = torch.Generator().manual_seed(1)
    q, gal = torch.randn(11, 6, generator=g), torch.randn(40, 6, generator=g)
    ql, gl = torch.randint(0, 4, (11,), generator=g), torch.randint(0, 4, (40,), generator=g)
    assert retrieval_recall(q, ql, gal, gl) == retrieval_recall(q, ql, gal, gl, chunk=3)
