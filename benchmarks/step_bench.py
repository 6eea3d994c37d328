"""Training-step benchmark: clips/s and model FLOPs utilisation of one CVRL training step.

One step = both views of ``--batch`` samples through the backbone in one call (2B clips, as
CVRL runs them, Qian et al. 2021, Sec. 3.1), the 3-layer MLP head, InfoNCE, backward and an
SGD step (momentum 0.9). The views are random float tensors already on the device: this is
the step alone, without the loader or the augmentation (see ``e2e_bench.py`` for those).

FLOPs per clip are counted once per model and input with ``FlopCounterMode`` on a real eager
forward + backward of the step (``flops.py``); achieved FLOP/s = counted FLOPs / measured
time, so a compiled step that fuses elementwise ops is credited with the same model FLOPs.
MFU needs the device's dense peak: from the table in ``flops.py`` by GPU name, or
``--peak-tflops``; on a CPU it stays blank unless a peak is given.

Every combination of ``--models`` x ``--dtypes`` x ``--compile`` x ``--memory-format`` is one
row; a row that fails (out of memory, a compiler error) prints the error and the run goes on.
Default inputs are the issue's: R3D-18 and R(2+1)D-18 at 16x112x112, ViT-B at 8x224x224;
``--frames`` / ``--size`` shrink them for CPU runs.

    .venv/bin/python benchmarks/step_bench.py [--models r3d_18 vit_base] [--batch 16]
        [--dtypes fp32 bf16] [--compile off on] [--memory-format contiguous channels_last_3d]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from ssvrl.objectives.cvrl import CVRL, CVRLConfig

# The inputs: (frames, size) per model.
DEFAULT_INPUT = {"r3d_18": (16, 112), "r2plus1d_18": (16, 112), "vit_base": (8, 224)}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


@dataclass
class Row:
    model: str
    frames: int
    size: int
    dtype: str
    compiled: bool
    memory_format: str


def build_step(row: Row, batch: int, device: torch.device) -> tuple[Callable[[], None], int]:
    """The step closure for ``row`` and its eager FLOPs (counted before any compile)."""
    torch.manual_seed(0)
    backbone = build_backbone(row.model).to(device)
    objective = CVRL(CVRLConfig(frames=row.frames), backbone.num_features).to(device)
    channels_last = row.memory_format == "channels_last_3d"
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last_3d)
    shape = (batch, 3, row.frames, row.size, row.size)
    views = {name: torch.randn(shape, device=device) for name in ("clip1", "clip2")}
    if channels_last:
        views = {k: v.contiguous(memory_format=torch.channels_last_3d) for k, v in views.items()}
    params = [*backbone.parameters(), *objective.parameters()]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    dtype = DTYPES[row.dtype]

    def forward_backward(encoder: torch.nn.Module) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = objective(encoder, views).loss
        loss.backward()

    flops = count_flops(lambda: forward_backward(backbone))
    opt.zero_grad(set_to_none=True)
    encoder = torch.compile(backbone) if row.compiled else backbone

    def step() -> None:
        forward_backward(encoder)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, flops


def measure(
    row: Row, batch: int, warmup: int, steps: int, device: torch.device, peak: float | None
) -> str:
    """One table row (measured) as markdown cells after the row's description."""
    step, flops = build_step(row, batch, device)
    warm_s, seconds = time_steps(step, warmup, steps, device)  # compiles in warm-up
    clips = 2 * batch
    flops_per_s = flops / seconds
    compile_s = f"{warm_s:.0f}" if row.compiled else ""
    return (
        f"{seconds * 1e3:.0f} | {clips / seconds:.1f} | {flops / clips / 1e9:.1f} | "
        f"{flops_per_s / 1e9:.0f} | {mfu_cell(flops_per_s, peak)} | "
        f"{peak_memory_cell(device)} | {compile_s}"
    )


def rows(args: argparse.Namespace) -> list[Row]:
    out = []
    for model, dtype, comp, fmt in itertools.product(
        args.models, args.dtypes, args.compile, args.memory_format
    ):
        frames, size = DEFAULT_INPUT.get(model, (16, 112))
        out.append(
            Row(model, args.frames or frames, args.size or size, dtype, comp == "on", fmt)
        )
    return out


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_INPUT))
    p.add_argument("--batch", type=int, default=8, help="samples per step (2 clips each)")
    p.add_argument("--frames", type=int, default=None, help="override every model's frames")
    p.add_argument("--size", type=int, default=None, help="override every model's crop size")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    p.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on"])
    p.add_argument(
        "--memory-format", nargs="+", default=["contiguous", "channels_last_3d"],
        choices=["contiguous", "channels_last_3d"],
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compile happens here)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense peak for MFU")
    p.add_argument("--tf32", action="store_true", help="fp32 matmuls in TF32 as well")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    print(machine_line(device))
    print(
        f"CVRL step: batch {args.batch} samples = {2 * args.batch} clips per step, "
        f"{args.warmup} warm-up + {args.steps} timed steps; FLOPs counted per clip on an eager "
        "forward+backward; fp32 = PyTorch defaults (cuDNN TF32 on, matmul TF32 "
        f"{'on' if args.tf32 else 'off'})\n"
    )
    print(
        "| model | input | dtype | compile | memory format | ms/step | clips/s | GFLOP/clip "
        "| achieved GFLOP/s | MFU | peak mem GiB | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows(args):
        peak = peak_tflops(device, row.dtype, args.peak_tflops)
        head = (
            f"| {row.model} | {row.frames}x{row.size}x{row.size} | {row.dtype} | "
            f"{'on' if row.compiled else 'off'} | {row.memory_format} | "
        )
        print_row(
            head,
            lambda row=row, peak=peak: measure(row, args.batch, args.warmup, args.steps, device,
                                               peak),
            row.compiled,
            device,
        )


if __name__ == "__main__":
    main()
