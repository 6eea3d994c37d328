"""The evaluators on cached features: linear probe, kNN and retrieval, one extraction shared.

Per-video aggregation follows the multi-view test of SlowFast (Feichtenhofer et al. 2019) and
CVRL (Qian et al. 2021): the linear probe scores every clip x crop and averages the softmax
scores per video; kNN and retrieval compare per-video features, the mean over clips x crops
(retrieval as in CoCLR / FAME, kNN on the same video features). Inputs are the readable videos
only (:meth:`FeatureSet.readable`), so an unreadable test video is reported, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssvrl.eval.feature_norm import NormName
from ssvrl.eval.features import FeatureSet
from ssvrl.eval.knn import knn_scores
from ssvrl.eval.linear_probe import Classifier, LinearHead, fit_linear_probe, topk_accuracy
from ssvrl.eval.retrieval import RECALL_KS, retrieval_recall

EVALUATORS = ("linear", "knn", "retrieval")


@dataclass(frozen=True)
class LinearSettings:
    """The cached linear probe (see :func:`ssvrl.eval.linear_probe.fit_linear_probe`)."""

    classifier: Classifier = "lbfgs"
    norm: NormName = "standardize"
    steps: int = 200  # L-BFGS iterations or SGD epochs
    lr: float = 0.1  # SGD
    weight_decay: float = 1e-4
    batch_size: int = 256  # SGD clips per step
    seed: int = 0


def video_features(fs: FeatureSet) -> torch.Tensor:
    """``(N, D)``: each video's clip (x crop) features averaged."""
    return fs.feats.mean(dim=1)


def linear_examples(train: FeatureSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Every clean clip, and every augmented copy when present, as one training example.

    Returns ``x`` (N*K + N*R*K, D) and ``y`` of the same length.
    """
    N, K, D = train.feats.shape
    xs, ys = [train.feats.reshape(N * K, D)], [train.labels.repeat_interleave(K)]
    if train.augmented is not None:
        R = train.augmented.shape[1]
        xs.append(train.augmented.reshape(N * R * K, D))  # (N*R*K, D), video-major
        ys.append(train.labels.repeat_interleave(R * K))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def video_scores(head: LinearHead, test: FeatureSet) -> torch.Tensor:
    """``(N, C)`` softmax scores of every clip x crop, averaged per video."""
    N, K, D = test.feats.shape
    logits = head(test.feats.reshape(N * K, D))  # (N*K, C)
    return logits.softmax(dim=1).reshape(N, K, -1).mean(dim=1)  # (N, C)


def evaluate_linear(
    train: FeatureSet, test: FeatureSet, num_classes: int, settings: LinearSettings
) -> dict[str, float]:
    """Fit the cached linear probe on ``train`` clips; top-1/top-5 on ``test`` videos."""
    x, y = linear_examples(train)
    s = settings
    head = fit_linear_probe(
        x, y, num_classes, steps=s.steps, weight_decay=s.weight_decay, classifier=s.classifier,
        norm=s.norm, lr=s.lr, batch_size=s.batch_size, seed=s.seed,
    )
    return topk_accuracy(video_scores(head, test), test.labels)


def evaluate_knn(
    train: FeatureSet, test: FeatureSet, num_classes: int, k: int, temperature: float
) -> dict[str, float]:
    """Weighted kNN of each test video among the training videos: top-1/top-5."""
    scores = knn_scores(
        video_features(train), train.labels, video_features(test), num_classes,
        k=k, temperature=temperature,
    )
    return topk_accuracy(scores, test.labels)


def evaluate_retrieval(train: FeatureSet, test: FeatureSet) -> dict[str, float]:
    """Test videos query the training videos: R@1, 5, 10, 20, 50."""
    return retrieval_recall(
        video_features(test), test.labels, video_features(train), train.labels, RECALL_KS
    )


def evaluate_cached(
    train: FeatureSet,
    test: FeatureSet,
    num_classes: int,
    evaluators: tuple[str, ...],
    linear: LinearSettings,
    knn_k: int = 20,
    knn_temperature: float = 0.07,
) -> dict[str, dict[str, float]]:
    """``{evaluator: metrics}`` for each of ``evaluators`` on readable videos."""
    unknown = set(evaluators) - set(EVALUATORS)
    if unknown:
        raise ValueError(f"unknown evaluators {sorted(unknown)}; known: {list(EVALUATORS)}")
    train, test = train.readable(), test.readable()
    out: dict[str, dict[str, float]] = {}
    if "linear" in evaluators:
        out["linear"] = evaluate_linear(train, test, num_classes, linear)
    if "knn" in evaluators:
        out["knn"] = evaluate_knn(train, test, num_classes, knn_k, knn_temperature)
    if "retrieval" in evaluators:
        out["retrieval"] = evaluate_retrieval(train, test)
    return out
