"""SVT training-step benchmark: throughput and peak memory at the paper's view recipe.

One step of SVT (Ranasinghe et al., CVPR 2022, Sec. 3.1 and 4) as ``ssvrl.objectives.svt.SVT``
runs it: the student takes all views of ``--batch`` videos (by default the paper's 2 global
views of 8 x 224 x 224 and 8 local views of 96 x 96 with 2, 4, 8 and 16 frames, two of each),
the EMA teacher the 2 global views; the DINO head (K = 65536), the loss over every
student/teacher pair except a view with itself, backward, gradient clipping at 3.0 (total
norm), AdamW, and the teacher's EMA update and centre update. The views are random float tensors
already on the device: the step alone, without the loader or the augmentation.

Reported per row: ms/step, videos/s (= samples/s), clips/s (all student views), model FLOPs per
video counted on an eager step (``flops.py``, teacher forward included), achieved FLOP/s, MFU
against the device's dense peak and peak allocated memory. Rows: ``--models`` x ``--batch`` x
``--dtypes`` x ``--compile``; a row that fails (out of memory, compiler error) prints the error
and the run goes on. ``--global-size`` / ``--local-size`` / ``--frames-scale`` shrink the views
for a CPU smoke run.

    .venv/bin/python benchmarks/svt_bench.py [--models vit_small vit_base] [--batch 8 16]
        [--dtypes bf16] [--compile off on]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from bench_common import (
    machine_line,
    peak_memory_cell,
    pick_device,
    print_row,
    set_threads,
    time_steps,
)
from flops import count_flops, mfu_cell, peak_tflops

from ssvrl.backbones import build_backbone
from ssvrl.objectives.base import ViewConfig, expand_views
from ssvrl.objectives.svt import PAPER_VIEWS, SVT, SVTConfig

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


@dataclass
class Row:
    model: str
    batch: int
    dtype: str
    compiled: bool


def scaled_views(global_size: int, local_size: int, frames_div: int) -> tuple[ViewConfig, ...]:
    """The paper's views with other crop sizes and frame counts divided by ``frames_div``."""
    out = []
    for v in PAPER_VIEWS:
        size = global_size if v.name == "global" else local_size
        frames = max(v.frames // frames_div, 1)
        out.append(replace(v, frames=frames, augment=replace(v.augment, crop_size=size)))
    return tuple(out)


def build_step(
    row: Row, views_cfg: tuple[ViewConfig, ...], out_dim: int, device: torch.device
) -> tuple[Callable[[], None], int, int]:
    """The step closure, its eager FLOPs and the number of student clips per video."""
    torch.manual_seed(0)
    global_spec = next(v for v in views_cfg if v.name == "global")
    backbone = build_backbone(
        row.model, num_frames=global_spec.frames, img_size=global_spec.augment.crop_size
    ).to(device)
    cfg = SVTConfig(views=views_cfg, out_dim=out_dim)
    objective = SVT(cfg, backbone.num_features).to(device)
    specs = expand_views(views_cfg)
    views = {
        s.name: torch.randn(
            row.batch, 3, s.frames, s.augment.crop_size, s.augment.crop_size, device=device
        )  # (B, C, T, H, W)
        for s in specs
    }
    params = [p for p in [*backbone.parameters(), *objective.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.04)
    dtype = DTYPES[row.dtype]
    objective(backbone, views)  # makes the teacher's copy of the encoder (not timed, not counted)

    def forward_backward(encoder: torch.nn.Module) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = objective(encoder, views).loss
        loss.backward()

    opt.zero_grad(set_to_none=True)
    flops = count_flops(lambda: forward_backward(backbone))
    opt.zero_grad(set_to_none=True)
    encoder = torch.compile(backbone) if row.compiled else backbone

    def step() -> None:
        forward_backward(encoder)
        objective.on_before_optimizer_step(opt, progress=0.5, epoch=1)
        torch.nn.utils.clip_grad_norm_(params, 3.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        objective.on_after_optimizer_step(backbone, progress=0.5)  # EMA teacher + centre

    return step, flops, len(specs)


def measure(
    row: Row,
    views_cfg: tuple[ViewConfig, ...],
    out_dim: int,
    warmup: int,
    steps: int,
    device: torch.device,
    peak: float | None,
) -> str:
    """One table row (measured) as markdown cells after the row's description."""
    step, flops, n_views = build_step(row, views_cfg, out_dim, device)
    warm_s, seconds = time_steps(step, warmup, steps, device)  # compiles in warm-up
    compile_s = f"{warm_s:.0f}" if row.compiled else ""
    return (
        f"{seconds * 1e3:.0f} | {row.batch / seconds:.1f} | {n_views * row.batch / seconds:.0f} | "
        f"{flops / row.batch / 1e9:.0f} | {flops / seconds / 1e12:.1f} | "
        f"{mfu_cell(flops / seconds, peak)} | {peak_memory_cell(device)} | {compile_s}"
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["vit_small", "vit_base"])
    p.add_argument("--batch", nargs="+", type=int, default=[8], help="videos per step")
    p.add_argument("--dtypes", nargs="+", default=["bf16"], choices=list(DTYPES))
    p.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--global-size", type=int, default=224, help="global views' crop (paper 224)")
    p.add_argument("--local-size", type=int, default=96, help="local views' crop (paper 96)")
    p.add_argument("--frames-div", type=int, default=1, help="divide every view's frames")
    p.add_argument("--out-dim", type=int, default=65536, help="DINO head's K (paper 65536)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compile happens here)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense peak for MFU")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    views_cfg = scaled_views(args.global_size, args.local_size, args.frames_div)
    specs = expand_views(views_cfg)
    print(machine_line(device))
    print(
        "SVT step (student: all views, teacher: the global views; DINO head K = "
        f"{args.out_dim}; AdamW, clip 3.0, EMA): views per video "
        + ", ".join(f"{s.name} {s.frames}x{s.augment.crop_size}" for s in specs)
        + f"; {args.warmup} warm-up + {args.steps} timed steps\n"
    )
    print(
        "| model | videos/step | dtype | compile | ms/step | videos/s | clips/s | GFLOP/video "
        "| achieved TFLOP/s | MFU | peak mem GiB | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model, batch, dtype, comp in itertools.product(
        args.models, args.batch, args.dtypes, args.compile
    ):
        row = Row(model, batch, dtype, comp == "on")
        head = f"| {model} | {batch} | {dtype} | {comp} | "
        print_row(
            head,
            lambda row=row, dtype=dtype: measure(
                row, views_cfg, args.out_dim, args.warmup, args.steps, device,
                peak_tflops(device, dtype, args.peak_tflops),
            ),
            row.compiled,
            device,
        )


if __name__ == "__main__":
    main()
