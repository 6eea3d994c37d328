"""Clip samplers: CVRL's decreasing interval distribution, looping, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from ssvrl.data.sampling import (
    IntervalPairSampler,
    RandomClipSampler,
    TemporalView,
    clip_indices,
    decreasing_interval,
    uniform_starts,
)

V1, V2 = TemporalView("clip1", 8, 4), TemporalView("clip2", 8, 4)


def _gaps(num_frames: int, n: int, power: float = 1.0) -> np.ndarray:
    sampler = IntervalPairSampler((V1, V2), power)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        idx = sampler(num_frames, rng)
        out.append(abs(int(idx["clip1"][0]) - int(idx["clip2"][0])))
    return np.array(out)


def test_gap_follows_linear_decreasing_density() -> None:
    """CVRL Sec. 3.2: P(t) ∝ 1 - t/M on [0, M] -> E[t] = M/3, P(t < M/2) = 3/4."""
    L = 129
    M = L - V1.span  # 100
    gaps = _gaps(L, 20000)
    assert gaps.min() >= 0 and gaps.max() <= M
    assert abs(gaps.mean() - M / 3) < 1.0
    assert abs((gaps < M / 2).mean() - 0.75) < 0.015
    # Histogram against the density: 5 bins, expected mass of bin [a, b] = F(b) - F(a).
    edges = np.linspace(0, M, 6)
    cdf = lambda t: 2 * t / M - (t / M) ** 2  # noqa: E731
    expected = np.diff(cdf(edges))
    observed = np.histogram(gaps, bins=edges)[0] / len(gaps)
    assert np.abs(observed - expected).max() < 0.015


def test_other_power_by_bisection_matches_official_cdf() -> None:
    M, p = 100, 2.0
    cdf = lambda k: (p + 1) / p * k / M - k ** (p + 1) / (p * M ** (p + 1))  # noqa: E731
    for u in (0.1, 0.5, 0.9):
        k = decreasing_interval(M, u, p)
        assert cdf(k) <= u + 1e-9 and cdf(k + 1) >= u - 1e-9


def test_clips_inside_video_and_order_shuffled() -> None:
    sampler = IntervalPairSampler((V1, V2))
    rng = np.random.default_rng(1)
    first_is_clip1 = 0
    for _ in range(2000):
        idx = sampler(64, rng)
        for v in idx.values():
            assert v.min() >= 0 and v.max() < 64
            assert np.all(np.diff(v) == 4)  # no wrap needed when the video is long enough
        first_is_clip1 += idx["clip1"][0] <= idx["clip2"][0]
    assert 0.45 < first_is_clip1 / 2000 < 0.6


def test_short_video_loops() -> None:
    """A 10-frame video and a 29-frame span: indices wrap modulo the frame count."""
    idx = clip_indices(5, V1, 10)
    assert idx.tolist() == [5, 9, 3, 7, 1, 5, 9, 3]
    out = IntervalPairSampler((V1, V2))(10, np.random.default_rng(0))
    assert all(v.max() < 10 and len(v) == 8 for v in out.values())


def test_deterministic_given_seed() -> None:
    s = RandomClipSampler((V1,))
    a = s(100, np.random.default_rng(42))["clip1"]
    b = s(100, np.random.default_rng(42))["clip1"]
    c = s(100, np.random.default_rng(43))["clip1"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("n", "span", "k", "expected"),
    [(100, 29, 3, [0, 36, 71]), (100, 29, 1, [35]), (20, 29, 2, [0, 0])],
)
def test_uniform_starts(n: int, span: int, k: int, expected: list[int]) -> None:
    assert uniform_starts(n, span, k) == expected
