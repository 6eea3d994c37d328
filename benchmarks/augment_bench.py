"""Benchmark: batched ``VideoAugment`` on a device vs a per-clip, per-frame CPU pipeline in
DataLoader workers, side by side in one run.

The baseline is what original research code runs in DataLoader workers: for every clip, draw
the params once (CVRL, Qian et al., CVPR 2021, Sec. 3.3: temporally consistent), then apply
``torchvision.transforms.v2.functional`` to each uint8 frame (resized crop, flip, colour jitter
in the clip's random order, grayscale, blur, solarize), convert to float and normalise. Both
sides use the same recipe and the same per-clip params (``sample_params``) on the same clips;
the table reports clips/s of each and their ratio, at 16x112x112 and 16x224x224 views.

    .venv/bin/python benchmarks/augment_bench.py [--device cuda] [--batch 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssvrl.augment import AugmentConfig, ClipParams, VideoAugment, sample_params


def _frame_ops(
    p: ClipParams, b: int, hw: tuple[int, int], size: int
) -> list[Callable[[Tensor], Tensor]]:
    """The per-frame torchvision ops for clip ``b`` (params converted to pixels)."""
    y0, x0, h, w = (p.crop[b] * torch.tensor([hw[0], hw[1], hw[0], hw[1]])).tolist()
    box = [round(y0), round(x0), max(1, round(h)), max(1, round(w))]
    fns: list[Callable[[Tensor], Tensor]] = [lambda f: TF.resized_crop(f, *box, [size, size])]
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
        taps = 2 * int(torch.ceil(torch.tensor(3 * sigma))) + 1
        fns.append(lambda f: TF.gaussian_blur(f, [taps, taps], [sigma, sigma]))
    if p.solarize[b]:
        fns.append(lambda f: TF.solarize(f, 128))
    return fns


def per_frame_pipeline(x: Tensor, seeds: Tensor, cfg: AugmentConfig) -> Tensor:
    """uint8 (B, C, T, H, W) -> float (B, C, T, S, S), one clip and one frame at a time."""
    params = sample_params(cfg, seeds, (x.shape[-2], x.shape[-1]))
    clips = []
    for b in range(x.shape[0]):
        fns = _frame_ops(params, b, (x.shape[-2], x.shape[-1]), cfg.crop_size)
        frames = []
        for t in range(x.shape[2]):
            frame = x[b, :, t]  # (C, H, W) uint8
            for fn in fns:
                frame = fn(frame)
            frame = TF.to_dtype(frame, torch.float32, scale=True)
            frames.append(TF.normalize(frame, list(cfg.mean), list(cfg.std)))
        clips.append(torch.stack(frames, dim=1))  # (C, T, S, S)
    return torch.stack(clips)


class PerClipDataset(Dataset):
    """The research-code baseline: each worker augments one clip, frame by frame, on the CPU."""

    def __init__(self, clips: Tensor, cfg: AugmentConfig) -> None:
        self.clips, self.cfg = clips, cfg  # uint8 (N, C, T, H, W), shared with the workers

    def __len__(self) -> int:
        return self.clips.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        seed = torch.tensor([i], dtype=torch.int64)
        return per_frame_pipeline(self.clips[i : i + 1], seed, self.cfg)[0]  # (C, T, S, S)


def workers_clips_per_s(clips: Tensor, cfg: AugmentConfig, workers: int, batch: int) -> float:
    """Clips/s of the per-clip pipeline in ``workers`` DataLoader workers (after a warm-up
    pass that starts the workers; persistent workers, so start-up is not timed)."""
    torch.set_num_threads(1)  # one thread per worker, as loaders run
    loader = DataLoader(
        PerClipDataset(clips, cfg),
        batch_size=batch,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    for _ in loader:  # warm-up: worker start, first-call overheads
        break
    start = time.perf_counter()
    n = sum(int(b.shape[0]) for b in loader)
    return n / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def library_clips_per_s(
    x: Tensor, seeds: Tensor, aug: VideoAugment, device: torch.device, repeats: int
) -> float:
    """Best-of-``repeats`` clips/s of the batched library on ``device`` (input already there)."""
    xd, aug = x.to(device), aug.to(device)
    aug(xd[:2], seeds[:2])  # warm-up (kernels, allocator)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        aug(xd, seeds)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return x.shape[0] / best


SIZES = {112: (128, 171), 224: (256, 341)}  # output crop -> decoded input (short side 128/256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the library's device)")
    parser.add_argument("--batch", type=int, default=32, help="clips per library call")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224], choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    parser.add_argument("--ref-clips", type=int, default=8, help="clips the baseline augments")
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg0 = AugmentConfig(solarize_p=0.2, blur_p=0.5)  # every op of the recipe exercised
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} CPU threads, library on {device}, baseline: "
        f"{args.workers} DataLoader workers x 1 thread, batch {args.batch}, T={args.frames}"
    )
    print(f"| {'view':>11} | {'input':>8} | library ({device.type}) | per-frame workers | ratio |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        cfg = dataclasses.replace(cfg0, crop_size=size)
        hw = SIZES[size]
        g = torch.Generator().manual_seed(size)
        x = torch.randint(0, 256, (args.batch, 3, args.frames, *hw), dtype=torch.uint8, generator=g)
        seeds = torch.arange(args.batch, dtype=torch.int64)
        torch.set_num_threads(threads)
        ours = library_clips_per_s(x, seeds, VideoAugment(cfg), device, args.repeats)
        ref = workers_clips_per_s(x[: args.ref_clips], cfg, args.workers, batch=2)
        torch.set_num_threads(threads)
        view = f"{args.frames}x{size}x{size}"
        print(
            f"| {view:>11} | {hw[0]}x{hw[1]:<4} | {ours:>10.1f} clips/s | {ref:>10.1f} clips/s "
            f"| {ours / ref:.1f}x |"
        )


if __name__ == "__main__":
    main()
