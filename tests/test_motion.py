"""Motion maps (frame differences, flow magnitude) and MCL's motion-focused sampling and crop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssvrl.augment import (
    AugmentConfig,
    box_density,
    flow_from_uint8,
    flow_magnitude,
    frame_difference,
    motion_focused_params,
    sample_params,
)
from ssvrl.data.motion_sampling import MotionFocusedSampler, low_res_luma, window_motion
from ssvrl.data.multiview_sampling import ViewTiming


def _slow_frame_difference(x: torch.Tensor) -> torch.Tensor:
    """Python-loop reference: per clip, frame and pixel |luma_t - luma_(t-1)|, frame 0 = 1's."""
    B, _, T, H, W = x.shape
    out = torch.zeros(B, 1, T, H, W, dtype=torch.float64)
    px = x.tolist()
    for b in range(B):
        for t in range(1, T):
            for i in range(H):
                for j in range(W):
                    r1, g1, b1 = (px[b][c][t][i][j] / 255 for c in range(3))
                    r0, g0, b0 = (px[b][c][t - 1][i][j] / 255 for c in range(3))
                    now = 0.299 * r1 + 0.587 * g1 + 0.114 * b1
                    before = 0.299 * r0 + 0.587 * g0 + 0.114 * b0
                    out[b, 0, t, i, j] = abs(now - before)
        out[b, 0, 0] = out[b, 0, 1]
    return out


def test_frame_difference_matches_slow_reference() -> None:
    x = torch.randint(0, 256, (2, 3, 4, 5, 6), dtype=torch.uint8)  # T=4 != C=3
    got = frame_difference(x)
    assert got.shape == (2, 1, 4, 5, 6) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _slow_frame_difference(x), atol=1e-6, rtol=0)
    assert 0 <= got.min() and got.max() <= 1


def test_frame_difference_static_and_single_frame() -> None:
    still = torch.rand(2, 3, 1, 8, 8).repeat(1, 1, 5, 1, 1)
    assert frame_difference(still).abs().max() == 0
    assert frame_difference(torch.rand(2, 3, 1, 8, 8)).shape == (2, 1, 1, 8, 8)
    grey = frame_difference(torch.rand(2, 1, 3, 8, 8))  # C=1: the channel itself
    assert grey.shape == (2, 1, 3, 8, 8) and grey.abs().sum() > 0


def test_flow_dequantisation_and_magnitude() -> None:
    T, H, W = 3, 4, 5
    u = torch.full((T, H, W), 3.0)
    v = torch.full((T, H, W), -4.0)
    quant = lambda f: ((f + 20) * 255 / 40).round().to(torch.uint8)  # noqa: E731 (denseflow)
    flow = flow_from_uint8(quant(u), quant(v), bound=20)
    assert flow.shape == (T, 2, H, W)
    torch.testing.assert_close(flow[:, 0], u, atol=40 / 255, rtol=0)  # one quantisation step
    mag = flow_magnitude(torch.stack([u, v], dim=1))
    assert mag.shape == (1, T, H, W)
    torch.testing.assert_close(mag, torch.full((1, T, H, W), 5.0))
    with pytest.raises(TypeError):
        flow_magnitude(torch.zeros(T, 2, H, W, dtype=torch.uint8))


def test_flow_magnitude_of_real_jpeg_flow(shared_data) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    folder = shared_data / "mmaction2" / "imgs"
    if not (folder / "x_00001.jpg").is_file():
        pytest.skip("no x_/y_ flow JPEGs in the shared data")
    read = lambda p: torch.from_numpy(np.array(Image.open(p).convert("L")))  # noqa: E731
    x = torch.stack([read(folder / f"x_{i:05d}.jpg") for i in (1, 2)])
    y = torch.stack([read(folder / f"y_{i:05d}.jpg") for i in (1, 2)])
    mag = flow_magnitude(flow_from_uint8(x, y))
    assert mag.shape == (1, 2, *x.shape[1:])
    assert 0 <= mag.min() and mag.max() <= 20 * math.sqrt(2) + 1e-4 and mag.mean() > 0


# -------------------------------------------------------------------- MCL temporal sampling
def _video(n: int = 120, moving: tuple[int, int] = (80, 100), size: int = 24) -> np.ndarray:
    """uint8 (n, size, size, 3): one still noise image, new noise every frame in ``moving``."""
    rng = np.random.default_rng(0)
    still = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    frames = np.repeat(still[None], n, axis=0)
    frames[moving[0] : moving[1]] = rng.integers(0, 256, (moving[1] - moving[0], size, size, 3))
    return frames


def test_window_motion_of_low_res_luma() -> None:
    video = _video()
    luma = low_res_luma(video, 8)
    assert luma.shape == (120, 8, 8) and 0 <= luma.min() and luma.max() <= 1
    score = window_motion(torch.stack([luma[0:8], luma[84:92]]))
    assert score[0] == 0 and score[1] > 0.01


def test_mcl_prefers_the_moving_window() -> None:
    video = _video()
    timing = ViewTiming("clip", frames=8, stride=2)
    greedy = MotionFocusedSampler((timing,), candidates=6, p=1.0, low_res=8)
    blind = MotionFocusedSampler((timing,), candidates=6, p=0.0, low_res=8)
    reads: list[list[int]] = []

    def get_frames(idx: list[int]) -> np.ndarray:
        reads.append(idx)
        return video[idx]

    luma = low_res_luma(video, 8)
    hits = {"greedy": 0, "blind": 0}
    for seed in range(40):
        for name, sampler in (("greedy", greedy), ("blind", blind)):
            rng = np.random.default_rng(seed)
            windows = sampler.candidate_windows(120, np.random.default_rng(seed))
            clip = sampler.read(get_frames, 120, rng)["clip"]
            assert clip.shape == (8, 24, 24, 3) and clip.dtype == torch.uint8
            moving = frame_difference(clip.permute(3, 0, 1, 2)[None].float()).sum() > 0
            hits[name] += int(moving)
            if name == "greedy":  # the chosen window is a candidate with the top score
                scores = window_motion(luma[torch.from_numpy(windows["clip"])])
                assert window_motion(low_res_luma(clip.numpy(), 8)[None])[0] == scores.max()
    assert len(reads) == 80, "candidates must be decoded in ONE call per sample"
    assert hits["greedy"] > hits["blind"] + 8, hits


def test_mcl_sampler_is_deterministic_and_a_clip_sampler() -> None:
    sampler = MotionFocusedSampler((ViewTiming("a", 4, 3), ViewTiming("b", 2, 1, jitter=1)))
    one = sampler(50, np.random.default_rng(7), fps=25.0)
    two = sampler(50, np.random.default_rng(7), fps=25.0)
    assert one.keys() == {"a", "b"} and all(np.array_equal(one[k], two[k]) for k in one)
    assert one["a"].shape == (4,) and ((one["a"] >= 0) & (one["a"] < 50)).all()
    # the generator advances the same whether motion is scored or not (content-independent)
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    sampler(50, r1)
    sampler.read(lambda idx: _video(50, (0, 50))[idx], 50, r2)
    assert r1.random() == r2.random()


# ---------------------------------------------------------------------- MCL spatial crop
def test_box_density_against_slow_sum() -> None:
    motion = torch.rand(2, 10, 12)
    crops = torch.tensor([[[0.1, 0.2, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]] * 2)
    dens = box_density(motion, crops)
    y0, x0, y1, x1 = 1, 2, 6, 8  # 0.1*10, 0.2*12 -> rounded box rows 1..5, cols 2..7
    torch.testing.assert_close(dens[:, 0], motion[:, y0:y1, x0:x1].mean(dim=(1, 2)))
    torch.testing.assert_close(dens[:, 1], motion.mean(dim=(1, 2)))


def test_motion_focused_crop_covers_the_moving_region() -> None:
    cfg = AugmentConfig(crop_size=16, scale=(0.1, 0.3))
    motion = torch.zeros(64, 32, 32)
    motion[:, :10, 22:] = 1.0  # all the motion in the top-right corner
    seeds = torch.arange(64)
    base = sample_params(cfg, seeds, (32, 32))
    greedy = motion_focused_params(cfg, seeds, motion, candidates=8, p=1.0)
    off = motion_focused_params(cfg, seeds, motion, candidates=8, p=0.0)
    torch.testing.assert_close(off.crop, base.crop)  # p = 0: the clip's ordinary crop
    assert torch.equal(greedy.flip, base.flip) and torch.equal(greedy.hue, base.hue)
    d_greedy, d_base = box_density(motion, greedy.crop[:, None])[:, 0], box_density(
        motion, base.crop[:, None]
    )[:, 0]
    assert (d_greedy >= d_base).all() and d_greedy.mean() > d_base.mean() + 0.1
    again = motion_focused_params(cfg, seeds, motion, candidates=8, p=1.0)
    assert torch.equal(again.crop, greedy.crop)
