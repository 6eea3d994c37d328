"""Weighted kNN (Wu et al. 2018 / DINO): known answers on hand-made embeddings."""

from __future__ import annotations

import math

import torch

from ssvrl.eval.knn import knn_scores

# Four training embeddings on the unit circle (angles in degrees) and their classes.
ANGLES = torch.tensor([0.0, 30.0, 90.0, 180.0])
BANK = torch.stack([ANGLES.deg2rad().cos(), ANGLES.deg2rad().sin()], dim=1)  # (4, 2)
LABELS = torch.tensor([0, 0, 1, 2])


def test_scores_are_sums_of_exp_similarity_over_top_k() -> None:
    query = torch.tensor([[1.0, 0.0]])  # angle 0: sims 1, cos 30, 0, -1
    scores = knn_scores(BANK, LABELS, query, 3, k=3, temperature=0.5)
    expected = torch.tensor([[math.exp(1 / 0.5) + math.exp(math.cos(math.pi / 6) / 0.5),
                              math.exp(0.0), 0.0]])  # the 180-degree one is not among the top 3
    assert torch.allclose(scores, expected, rtol=1e-5)


def test_close_neighbour_outvotes_a_far_majority_at_low_temperature() -> None:
    """Two class-0 neighbours at similarity 0.5 against one class-1 neighbour at 0.99."""
    bank = torch.tensor([[0.5, math.sqrt(0.75)], [0.5, -math.sqrt(0.75)],
                         [0.99, math.sqrt(1 - 0.99**2)]])
    labels = torch.tensor([0, 0, 1])
    q = torch.tensor([[1.0, 0.0]])
    sharp = knn_scores(bank, labels, q, 2, k=3, temperature=0.07)
    flat = knn_scores(bank, labels, q, 2, k=3, temperature=100.0)
    assert sharp.argmax().item() == 1  # exp(0.99/0.07) >> 2 exp(0.5/0.07)
    assert flat.argmax().item() == 0  # weights nearly equal: the majority wins


def test_features_are_l2_normalised_and_k_is_capped() -> None:
    query = torch.tensor([[0.9, 0.1], [-3.0, 0.2]])
    ref = knn_scores(BANK, LABELS, query, 3, k=2, temperature=0.07)
    scaled = knn_scores(BANK * torch.tensor([[2.0], [0.1], [5.0], [7.0]]), LABELS,
                        query * 10, 3, k=2, temperature=0.07)
    assert torch.allclose(ref, scaled, rtol=1e-4)
    assert ref[:, 2].tolist()[1] > 0 and ref[0].argmax() == 0 and ref[1].argmax() == 2
    everything = knn_scores(BANK, LABELS, query, 3, k=50, temperature=1.0)  # k > bank size
    sims = torch.nn.functional.normalize(query, dim=1) @ BANK.T  # (2, 4)
    by_hand = torch.zeros(2, 3).index_add_(1, LABELS, sims.exp())
    assert torch.allclose(everything, by_hand, rtol=1e-5)


def test_chunking_does_not_change_scores() -> None:
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(50, 8, generator=g), torch.randn(13, 8, generator=g)
    labels = torch.randint(0, 5, (50,), generator=g)
    whole = knn_scores(bank, labels, queries, 5, k=7)
    assert torch.allclose(whole, knn_scores(bank, labels, queries, 5, k=7, chunk=4))
