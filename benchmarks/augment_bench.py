"""Micro-benchmark: batched ``VideoAugment`` vs a per-clip, per-frame torchvision pipeline.

The baseline is what original research code runs in DataLoader workers: for every clip, draw
the params once (CVRL, Qian et al., CVPR 2021, Sec. 3.3: temporally consistent), then apply
``torchvision.transforms.v2.functional`` to each uint8 frame (resized crop, flip, colour jitter
in the clip's random order, grayscale, blur, solarize), convert to float and normalise. Both
sides use the same recipe and the same per-clip params (``sample_params``), on the same batch,
in the same process and thread count; the table reports clips/s and the speed-up.

    .venv/bin/python benchmarks/augment_bench.py [--batch 32] [--frames 16] [--ref-clips 4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from ssvrl.augment import AugmentConfig, ClipParams, VideoAugment, sample_params


def _frame_ops(p: ClipParams, b: int, hw: tuple[int, int]) -> list[Callable[[Tensor], Tensor]]:
    """The per-frame torchvision ops for clip ``b`` (params converted to pixels)."""
    y0, x0, h, w = (p.crop[b] * torch.tensor([hw[0], hw[1], hw[0], hw[1]])).tolist()
    box = [round(y0), round(x0), max(1, round(h)), max(1, round(w))]
    fns: list[Callable[[Tensor], Tensor]] = [lambda f: TF.resized_crop(f, *box, [112, 112])]
    if p.flip[b]:
        fns.append(TF.horizontal_flip)
    jitter = (
        lambda f: TF.adjust_brightness(f, float(p.brightness[b])),
        lambda f: TF.adjust_contrast(f, float(p.contrast[b])),
        lambda f: TF.adjust_saturation(f, float(p.saturation[b])),
        lambda f: TF.adjust_hue(f, float(p.hue[b])),
    )
    if p.jitter[b]:
        fns.extend(jitter[int(k)] for k in p.jitter_order[b])
    if p.gray[b]:
        fns.append(lambda f: TF.rgb_to_grayscale(f, num_output_channels=3))
    if p.blur_sigma[b] > 0:
        sigma = float(p.blur_sigma[b])
        size = 2 * int(torch.ceil(torch.tensor(3 * sigma))) + 1
        fns.append(lambda f: TF.gaussian_blur(f, [size, size], [sigma, sigma]))
    if p.solarize[b]:
        fns.append(lambda f: TF.solarize(f, 128))
    return fns


def per_frame_pipeline(x: Tensor, seeds: Tensor, cfg: AugmentConfig) -> Tensor:
    """uint8 (B, C, T, H, W) -> float (B, C, T, 112, 112), one clip and one frame at a time."""
    params = sample_params(cfg, seeds, (x.shape[-2], x.shape[-1]))
    clips = []
    for b in range(x.shape[0]):
        fns = _frame_ops(params, b, (x.shape[-2], x.shape[-1]))
        frames = []
        for t in range(x.shape[2]):
            frame = x[b, :, t]  # (C, H, W) uint8
            for fn in fns:
                frame = fn(frame)
            frame = TF.to_dtype(frame, torch.float32, scale=True)
            frames.append(TF.normalize(frame, list(cfg.mean), list(cfg.std)))
        clips.append(torch.stack(frames, dim=1))  # (C, T, 112, 112)
    return torch.stack(clips)


def _seconds(fn: Callable[[], Tensor]) -> float:
    """Wall time of one call (device work included)."""
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_best(fns: list[Callable[[], Tensor]], repeats: int) -> list[float]:
    """Best-of-``repeats`` seconds per function, alternating calls so load drifts hit all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], _seconds(fn))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--ref-clips",
        type=int,
        default=4,
        help="clips timed for the per-frame baseline (its cost is per clip)",
    )
    args = parser.parse_args()
    cfg = AugmentConfig(solarize_p=0.2)  # every op of the recipe exercised
    aug = VideoAugment(cfg)
    seeds = torch.arange(args.batch, dtype=torch.int64)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"batch {args.batch} clips x {args.frames} frames -> 3x{args.frames}x112x112"
    )
    print(f"{'input':>12} | {'device':>6} | {'VideoAugment':>13} | {'per-frame tv':>13} | ratio")
    n = min(args.ref_clips, args.batch)
    for hw in ((112, 112), (128, 171)):
        x = torch.randint(0, 256, (args.batch, 3, args.frames, *hw), dtype=torch.uint8)
        ours_fn = lambda: aug(x, seeds)  # noqa: E731
        ref_fn = lambda: per_frame_pipeline(x[:n], seeds[:n], cfg)  # noqa: E731
        aug(x[:2], seeds[:2]), per_frame_pipeline(x[:1], seeds[:1], cfg)  # warm-up
        t_ours, t_ref = interleaved_best([ours_fn, ref_fn], args.repeats)
        ours, ref = args.batch / t_ours, n / t_ref
        print(
            f"{'x'.join(map(str, hw)):>12} | {'cpu':>6} | {ours:>9.1f} c/s | {ref:>9.1f} c/s "
            f"| {ours / ref:.2f}x"
        )
        if torch.cuda.is_available():
            xd = x.to("cuda")
            aug(xd, seeds)  # warm-up (cuDNN, allocator)
            gpu = args.batch / interleaved_best([lambda: aug(xd, seeds)], args.repeats)[0]
            print(
                f"{'x'.join(map(str, hw)):>12} | {'cuda':>6} | {gpu:>9.1f} c/s | "
                f"{'':>13} | {gpu / ref:.2f}x vs per-frame CPU"
            )


if __name__ == "__main__":
    main()
