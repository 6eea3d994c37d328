"""Tests of ssvrl.augment: frame consistency, replay, determinism, distributions, references."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from ssvrl.augment import (
    LUMA,
    AugmentConfig,
    ClipParams,
    VideoAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    apply_geometry,
    apply_photometric,
    center_crop_params,
    gaussian_blur,
    sample_params,
    solarize,
    to_grayscale,
)

OFF = dict(
    scale=(1.0, 1.0),
    ratio=(1.0, 1.0),
    flip_p=0.0,
    jitter_p=0.0,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
    grayscale_p=0.0,
    blur_p=0.0,
    solarize_p=0.0,
    normalize=False,
)
ALL = dict(flip_p=0.5, jitter_p=1.0, grayscale_p=0.3, blur_p=0.7, solarize_p=0.5, normalize=False)
SINGLE = {
    "crop": dict(scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3)),
    "flip": dict(flip_p=1.0),
    "brightness": dict(jitter_p=1.0, brightness=0.4),
    "contrast": dict(jitter_p=1.0, contrast=0.4),
    "saturation": dict(jitter_p=1.0, saturation=0.4),
    "hue": dict(jitter_p=1.0, hue=0.1),
    "grayscale": dict(grayscale_p=1.0),
    "blur": dict(blur_p=1.0, blur_sigma=(0.5, 2.0)),
    "solarize": dict(solarize_p=1.0),
}
SEEDS = torch.tensor([0, 1, 2], dtype=torch.int64)
FrameFn = Callable[[torch.Tensor, float], torch.Tensor]


def only(**kw: object) -> AugmentConfig:
    """A recipe with every op off except those in ``kw``."""
    return AugmentConfig(**{"crop_size": 16, **OFF, **kw})


def full(**kw: object) -> AugmentConfig:
    """The default recipe with every op likely on, unnormalised."""
    return AugmentConfig(**{"crop_size": 16, **ALL, **kw})


def clip(b: int = 3, t: int = 5, h: int = 20, w: int = 24, seed: int = 0) -> torch.Tensor:
    """Random float clips (B, 3, T, H, W) in [0, 1]."""
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed))


def frames_identical(y: torch.Tensor) -> bool:
    """Every frame of every clip equals the clip's first frame."""
    return torch.allclose(y, y[:, :, :1].expand_as(y), atol=1e-6, rtol=0)


# ----------------------------------------------------------------- frame consistency, replay
@pytest.mark.parametrize("op", [*SINGLE, "all"])
def test_identical_frames_stay_identical(op: str) -> None:
    cfg = full() if op == "all" else only(**SINGLE[op])
    x = clip(t=1).repeat(1, 1, 5, 1, 1)  # (3, 3, 5, 20, 24): one image repeated over T
    y = VideoAugment(cfg)(x, SEEDS)
    assert frames_identical(y)
    untouched = VideoAugment(only())(x, SEEDS)
    assert not torch.allclose(y, untouched, atol=1e-4), "the op did nothing: vacuous test"


def test_frame_check_detects_per_frame_params() -> None:
    x = clip(t=1).repeat(1, 1, 5, 1, 1)
    per_frame = x * torch.linspace(0.5, 1.0, 5).view(1, 1, 5, 1, 1)
    assert not frames_identical(per_frame)


@pytest.mark.parametrize("op", [*(k for k in SINGLE if k != "contrast"), "all"])
def test_each_frame_equals_its_own_augmentation(op: str) -> None:
    """Contrast is excluded: its pivot is the clip's mean (see test_one_colour_map_per_clip)."""
    cfg = full(contrast=0.0) if op == "all" else only(**SINGLE[op])
    aug, x = VideoAugment(cfg), clip()
    params = sample_params(cfg, SEEDS, (20, 24))
    y = aug(x, SEEDS)
    for t in range(x.shape[2]):
        alone = aug(x[:, :, t : t + 1], None, params=params)
        torch.testing.assert_close(alone, y[:, :, t : t + 1], atol=1e-6, rtol=0)


def test_one_colour_map_per_clip() -> None:
    """Frames sharing content get the same colours there, contrast included (per-clip pivot)."""
    x = clip(t=1).repeat(1, 1, 2, 1, 1)
    x[:, :, 1, 10:] = torch.rand(3, 3, 10, 24)  # frame 1: same top half, different bottom half
    params = sample_params(full(blur_p=0.0, grayscale_p=0.0), SEEDS)
    y = apply_photometric(x, params)
    torch.testing.assert_close(y[:, :, 0, :10], y[:, :, 1, :10], atol=1e-6, rtol=0)
    per_frame = torch.stack(
        [adjust_contrast(x[:, :, t : t + 1], params.contrast)[:, :, 0] for t in range(2)], dim=2
    )  # a per-frame pivot differs
    assert not torch.allclose(per_frame[:, :, 0, :10], per_frame[:, :, 1, :10], atol=1e-4)


def test_geometry_replays_on_a_mask() -> None:
    x = clip()
    params = sample_params(full(), SEEDS, (20, 24))
    mask = x[:, :1].clone()  # (B, 1, T, H, W)
    replayed = apply_geometry(mask, params, 16)
    torch.testing.assert_close(replayed, apply_geometry(x, params, 16)[:, :1], atol=0, rtol=0)
    labels = (mask > 0.5).to(torch.uint8)
    nearest = apply_geometry(labels, params, 16, mode="nearest")
    assert set(nearest.unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------- determinism and independence
def test_same_seeds_same_output_and_views_differ() -> None:
    aug, x = VideoAugment(full()), clip()
    assert torch.equal(aug(x, SEEDS), aug(x, SEEDS.clone()))
    other = SEEDS + 100
    assert not torch.equal(sample_params(aug.cfg, SEEDS).crop, sample_params(aug.cfg, other).crop)
    assert not torch.allclose(aug(x, SEEDS), aug(x, other), atol=1e-3)


def test_sample_does_not_depend_on_the_batch() -> None:
    aug, x = VideoAugment(full(blur_sigma=(0.1, 3.0))), clip(b=4)
    seeds = torch.tensor([10, 11, 12, 13])
    batched = aug(x, seeds)  # blur sigmas differ: each clip's kernel must be its own
    for b in range(4):
        torch.testing.assert_close(
            batched[b : b + 1], aug(x[b : b + 1], seeds[b : b + 1]), atol=1e-6, rtol=0
        )
    batch, alone = sample_params(aug.cfg, [5, 7, 9]), sample_params(aug.cfg, [7])
    for f in dataclasses.fields(ClipParams):
        assert torch.equal(getattr(batch, f.name)[1:2], getattr(alone, f.name)), f.name


# ---------------------------------------------------------------------- distributions
def reference_area_mean(scale: tuple[float, float], ratio: tuple[float, float]) -> float:
    """Mean crop area of torchvision's RandomResizedCrop on a square image, by numpy Monte Carlo."""
    rng = np.random.default_rng(0)
    area = rng.uniform(*scale, size=(200_000, 10))
    r = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=area.shape))
    fits = (area * r <= 1) & (area / r <= 1)
    first = fits.argmax(axis=1)
    picked = np.where(fits.any(axis=1), area[np.arange(len(area)), first], 1.0)
    return float(picked.mean())


def test_parameter_distributions() -> None:
    cfg = AugmentConfig()
    p = sample_params(cfg, torch.arange(2000), (128, 128))
    area = p.crop[:, 2] * p.crop[:, 3]
    assert area.min() >= 0.3 - 1e-6 and area.max() <= 1.0 + 1e-6
    assert abs(area.mean().item() - reference_area_mean(cfg.scale, cfg.ratio)) < 0.02
    assert (p.crop[:, :2] >= 0).all() and (p.crop[:, :2] + p.crop[:, 2:] <= 1 + 1e-6).all()
    assert abs(p.flip.float().mean().item() - 0.5) < 0.04
    assert abs(p.gray.float().mean().item() - 0.2) < 0.03
    assert abs(p.jitter.float().mean().item() - 0.8) < 0.03
    assert abs((p.blur_sigma > 0).float().mean().item() - 0.5) < 0.04
    assert p.hue.abs().max() <= 0.1 and p.hue.min() < -0.09 and p.hue.max() > 0.09
    for name in ("brightness", "contrast", "saturation"):
        v = getattr(p, name)
        assert v.min() >= 0.6 - 1e-6 and v.max() <= 1.4 + 1e-6 and abs(v.mean() - 1) < 0.02
    assert (p.jitter_order.sort(dim=1).values == torch.arange(4)).all()
    first_op = torch.bincount(p.jitter_order[:, 0], minlength=4).float() / 2000
    assert (first_op - 0.25).abs().max() < 0.04


def test_crop_aspect_is_in_pixels_for_non_square_inputs() -> None:
    p = sample_params(AugmentConfig(), torch.arange(500), (128, 171))
    aspect = (p.crop[:, 3] * 171) / (p.crop[:, 2] * 128)
    assert aspect.min() >= 3 / 4 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4


# ------------------------------------------------------------------ geometry references
def bilinear_reference(x: torch.Tensor, box: list[float], size: int) -> torch.Tensor:
    """Hand-written crop + resize of (C, T, H, W): sample pixel centres of the box, edge clamp."""
    H, W = x.shape[-2:]
    y0, x0, h, w = box
    ys = ((y0 + h * (torch.arange(size) + 0.5) / size) * H - 0.5).clamp(0, H - 1)
    xs = ((x0 + w * (torch.arange(size) + 0.5) / size) * W - 0.5).clamp(0, W - 1)
    yl, xl = ys.floor().long(), xs.floor().long()
    yh, xh = (yl + 1).clamp(max=H - 1), (xl + 1).clamp(max=W - 1)
    wy, wx = (ys - yl).view(-1, 1), (xs - xl).view(1, -1)
    top = x[..., yl, :][..., xl] * (1 - wx) + x[..., yl, :][..., xh] * wx
    bottom = x[..., yh, :][..., xl] * (1 - wx) + x[..., yh, :][..., xh] * wx
    return top * (1 - wy) + bottom * wy


def geometry_params(boxes: list[list[float]], flip: list[bool]) -> ClipParams:
    """Identity params with the given crop boxes and flips."""
    p = center_crop_params(len(boxes), (1, 1))
    return dataclasses.replace(p, crop=torch.tensor(boxes), flip=torch.tensor(flip))


def test_crop_matches_bilinear_reference() -> None:
    x = clip(b=3, h=30, w=40)
    boxes = [[0.1, 0.2, 0.5, 0.3], [0.0, 0.0, 1.0, 1.0], [0.37, 0.05, 0.6, 0.9]]
    y = apply_geometry(x, geometry_params(boxes, [False] * 3), 24)
    for b, box in enumerate(boxes):
        torch.testing.assert_close(y[b], bilinear_reference(x[b], box, 24), atol=1e-5, rtol=0)


def test_crop_matches_torchvision_resized_crop() -> None:
    x = clip(b=1, h=64, w=80)  # box rows 8..40, cols 16..48, halved: no edge effects
    y = apply_geometry(x, geometry_params([[8 / 64, 16 / 80, 32 / 64, 32 / 80]], [False]), 16)
    frames = x[0].transpose(0, 1)  # (T, C, H, W)
    ref = TF.resized_crop(frames, 8, 16, 32, 32, [16, 16], antialias=False).transpose(0, 1)
    torch.testing.assert_close(y[0], ref, atol=1e-5, rtol=0)


def test_flip_is_a_mirror_of_the_crop() -> None:
    x, boxes = clip(b=2), [[0.1, 0.2, 0.5, 0.7], [0.0, 0.3, 0.9, 0.6]]
    plain = apply_geometry(x, geometry_params(boxes, [False, False]), 16)
    flipped = apply_geometry(x, geometry_params(boxes, [True, True]), 16)
    torch.testing.assert_close(flipped, torch.flip(plain, dims=[-1]), atol=1e-6, rtol=0)


def test_eval_transform_is_a_centre_crop() -> None:
    aug = VideoAugment(AugmentConfig(crop_size=16))
    tall, wide = clip(b=2, h=40, w=20), clip(b=2, h=20, w=40)
    assert torch.equal(aug.eval_transform(tall), aug.eval_transform(tall))
    mean, std = torch.tensor(aug.cfg.mean), torch.tensor(aug.cfg.std)
    for x, crop in ((tall, tall[..., 10:30, :]), (wide, wide[..., :, 10:30])):
        ref = F.interpolate(crop.flatten(1, 2), size=(16, 16), mode="bilinear")
        ref = ref.view(2, 3, 5, 16, 16)
        ref = (ref - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1)
        torch.testing.assert_close(aug.eval_transform(x), ref, atol=1e-5, rtol=0)


# -------------------------------------------------------------------- colour references
def per_frame(fn: FrameFn, x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Slow reference: ``fn(frame (C, H, W), factor)`` for every frame of every clip."""
    return torch.stack(
        [
            torch.stack([fn(x[b, :, t], float(factors[b])) for t in range(x.shape[2])], dim=1)
            for b in range(x.shape[0])
        ]
    )


def contrast_reference(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Per-clip loop: blend with the mean luma of the whole clip."""
    out = []
    for b in range(x.shape[0]):
        gray = sum(w * x[b, c] for c, w in enumerate(LUMA))
        out.append((factors[b] * x[b] + (1 - factors[b]) * gray.mean()).clamp(0, 1))
    return torch.stack(out)


def saturation_reference(frame: torch.Tensor, f: float) -> torch.Tensor:
    gray = sum(w * frame[c] for c, w in enumerate(LUMA))
    return (f * frame + (1 - f) * gray).clamp(0, 1)


def blur_reference(frame: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return frame
    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(frame, [k, k], [sigma, sigma])


def test_colour_ops_match_references() -> None:
    x = clip(b=4, t=3)
    f, hue = torch.tensor([0.6, 1.4, 1.0, 0.8]), torch.tensor([0.1, -0.1, 0.5, 0.0])
    torch.testing.assert_close(adjust_brightness(x, f), per_frame(TF.adjust_brightness, x, f))
    torch.testing.assert_close(
        adjust_hue(x, hue), per_frame(TF.adjust_hue, x, hue), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(adjust_saturation(x, f), per_frame(saturation_reference, x, f))
    assert (adjust_saturation(x, f) - per_frame(TF.adjust_saturation, x, f)).abs().max() < 1e-3
    torch.testing.assert_close(adjust_contrast(x, f), contrast_reference(x, f))
    gray = per_frame(lambda fr, _: saturation_reference(fr, 0.0), x, f)
    torch.testing.assert_close(to_grayscale(x), gray)
    torch.testing.assert_close(solarize(x), per_frame(lambda fr, _: TF.solarize(fr, 0.5), x, f))
    sigma = torch.tensor([0.0, 0.3, 1.0, 2.5])
    torch.testing.assert_close(
        gaussian_blur(x, sigma), per_frame(blur_reference, x, sigma), atol=1e-6, rtol=0
    )
    assert torch.equal(gaussian_blur(x, sigma)[0], x[0]), "sigma 0 must be the identity"


def photometric_reference(x: torch.Tensor, p: ClipParams) -> torch.Tensor:
    """Per-clip loop over the ops, in each clip's jitter order, from the formulas."""
    out = []
    for b in range(x.shape[0]):
        v = x[b : b + 1]
        ops = (
            lambda v: adjust_brightness(v, p.brightness[b : b + 1]),  # noqa: B023
            lambda v: contrast_reference(v, p.contrast[b : b + 1]),  # noqa: B023
            lambda v: per_frame(saturation_reference, v, p.saturation[b : b + 1]),  # noqa: B023
            lambda v: per_frame(TF.adjust_hue, v, p.hue[b : b + 1]),  # noqa: B023
        )
        for k in p.jitter_order[b].tolist() if p.jitter[b] else []:
            v = ops[k](v)
        if p.gray[b]:
            v = per_frame(lambda fr, _: saturation_reference(fr, 0.0), v, p.hue[b : b + 1])
        v = per_frame(blur_reference, v, p.blur_sigma[b : b + 1])
        out.append(torch.where(v < 0.5, v, 1 - v) if p.solarize[b] else v)
    return torch.cat(out)


def test_photometric_pipeline_matches_reference() -> None:
    x = clip(b=8, t=3)
    p = sample_params(full(), torch.arange(8))
    assert p.jitter_order[:, 0].unique().numel() > 1 and 0 < p.gray.sum() < 8
    torch.testing.assert_close(
        apply_photometric(x, p), photometric_reference(x, p), atol=1e-5, rtol=0
    )


def test_jitter_order_is_followed() -> None:
    x, p = clip(b=1, t=2), sample_params(only(jitter_p=1.0, saturation=0.4, hue=0.1), [3])
    a = dataclasses.replace(p, jitter_order=torch.tensor([[2, 3, 0, 1]]))
    b = dataclasses.replace(p, jitter_order=torch.tensor([[3, 2, 0, 1]]))
    ya, yb = apply_photometric(x, a), apply_photometric(x, b)
    assert not torch.allclose(ya, yb, atol=1e-4)
    torch.testing.assert_close(yb, photometric_reference(x, b), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ dtypes, shapes, range
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_shapes_and_range(dtype: torch.dtype) -> None:
    x = clip(b=1, t=1, h=21, w=33)
    raw = (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    cfg = full(crop_size=12, brightness=0.9, contrast=0.9, saturation=0.9)
    y = VideoAugment(cfg)(raw, torch.tensor([4]))
    assert y.shape == (1, 3, 1, 12, 12) and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1
    normed = VideoAugment(dataclasses.replace(cfg, normalize=True))(raw, torch.tensor([4]))
    torch.testing.assert_close(normed, (y - 0.45) / 0.225)


def test_ops_keep_float64_and_upcast_half() -> None:
    x, p = clip(), sample_params(full(), SEEDS, (20, 24))
    ref = apply_photometric(apply_geometry(x, p, 16), p)
    for dtype, expected in ((torch.float64, torch.float64), (torch.bfloat16, torch.float32)):
        y = apply_photometric(apply_geometry(x.to(dtype), p, 16), p)
        assert y.dtype == expected
        torch.testing.assert_close(
            y.float(), ref, atol=2e-2 if dtype == torch.bfloat16 else 1e-5, rtol=0
        )


def test_full_recipe_range_before_normalisation() -> None:
    cfg = full(brightness=2.0, contrast=2.0, saturation=2.0, hue=0.5)
    y = VideoAugment(cfg)(clip(b=6, t=7, h=18, w=31), torch.arange(6))
    assert y.shape == (6, 3, 7, 16, 16) and y.min() >= 0 and y.max() <= 1


def test_uint8_input_is_scaled() -> None:
    x = torch.randint(0, 256, (2, 3, 4, 20, 24), dtype=torch.uint8)
    aug = VideoAugment(full())
    torch.testing.assert_close(
        aug(x, SEEDS[:2]), aug(x.float() / 255, SEEDS[:2]), atol=1e-5, rtol=0
    )


def test_inputs_are_not_modified() -> None:
    x = clip()
    before = x.clone()
    apply_photometric(x, sample_params(full(), SEEDS))
    VideoAugment(full())(x, SEEDS)
    assert torch.equal(x, before)


# -------------------------------------------------------------------- config and params
def test_config_from_yaml_lists_and_validation() -> None:
    cfg = AugmentConfig(scale=[0.2, 0.9], mean=[0.5, 0.5, 0.5])  # type: ignore[arg-type]
    assert cfg.scale == (0.2, 0.9) and isinstance(cfg.mean, tuple)
    hash(cfg)
    for bad in (
        dict(scale=(0.9, 0.2)),
        dict(flip_p=1.5),
        dict(hue=0.7),
        dict(ratio=(1.0,)),
        dict(std=(0.0, 1.0, 1.0)),
    ):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)  # type: ignore[arg-type]


def test_params_to_and_select() -> None:
    p = sample_params(full(), torch.arange(5))
    sub = p.select(torch.tensor([1, 3]))
    assert sub.batch_size == 2 and torch.equal(sub.crop, p.crop[[1, 3]])
    moved = p.to("cpu")
    assert all(
        torch.equal(getattr(moved, f.name), getattr(p, f.name)) for f in dataclasses.fields(p)
    )
    with pytest.raises(ValueError):
        VideoAugment(full())(clip(b=2), torch.arange(3))
