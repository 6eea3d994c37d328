"""The training benchmarks (issue #10) run, print their tables, and count FLOPs correctly.

Each benchmark's ``main`` runs in this process with the tiniest options (a few steps of a tiny
model on the CPU), so the scripts cannot rot; the FLOP counter is checked against hand counts
for one Conv3d, one Linear and one attention call (the CPU kernel torch's counter misses); the
augmentation is checked to make no blocking host-to-device copy (each one would synchronise a
CUDA stream), with the ``meta`` device standing in for the GPU.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ssvrl.augment import AugmentConfig, VideoAugment

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = [  # a 4-wide small3d on 4 x 32 x 32 crops, batch 2
    "data.batch_size=2", "backbone.width=4", "objective.frames=4",
    "objective.augment.crop_size=32", "objective.proj_hidden=32", "trainer.progress_bar=false",
]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``import``-able benchmark modules (they import their siblings by plain name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("flops")


def table_rows(text: str, first: str) -> list[list[str]]:
    """Cells of the markdown rows whose first cell is ``first``."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]
    return [r for r in rows if r[0] == first]


def test_flops_conv3d_and_linear_match_hand_counts(bench: ModuleType) -> None:
    conv = torch.nn.Conv3d(3, 8, kernel_size=3, padding=1)
    x = torch.randn(2, 3, 4, 8, 8)
    # forward: 2 FLOPs per MAC; N * Cout * T'H'W' outputs, Cin * k^3 MACs each
    fwd = 2 * (2 * 8 * 4 * 8 * 8) * (3 * 27)
    assert bench.count_flops(lambda: conv(x)) == fwd
    # backward without an input gradient: the weight gradient only, one more product
    assert bench.count_flops(lambda: conv(x).sum().backward()) == 2 * fwd
    xg = x.clone().requires_grad_(True)
    assert bench.count_flops(lambda: conv(xg).sum().backward()) == 3 * fwd
    lin = torch.nn.Linear(10, 7)
    y = torch.randn(5, 10)
    assert bench.count_flops(lambda: lin(y)) == 2 * 5 * 10 * 7
    assert bench.count_flops(lambda: lin(y).sum().backward()) == 2 * (2 * 5 * 10 * 7)


def test_flops_count_cpu_attention(bench: ModuleType) -> None:
    B, H, L, D = 2, 3, 16, 8
    q = torch.randn(B, H, L, D, requires_grad=True)
    # forward: Q K^T and P V, 2 * B*H*L*L*D each; backward: 5 such products (torch's formula)
    got = bench.count_flops(lambda: F.scaled_dot_product_attention(q, q, q).sum().backward())
    assert got == 7 * 2 * B * H * L * L * D


def test_peaks_and_mfu(bench: ModuleType) -> None:
    cpu = torch.device("cpu")
    assert bench.peak_tflops(cpu, "bf16") is None
    assert bench.peak_tflops(cpu, "bf16", override=100.0) == 100.0
    assert bench.mfu_cell(5e13, None) == ""
    assert bench.mfu_cell(5e13, 100.0) == "50.0%"
    assert dict(bench.PEAK_TFLOPS)["H200"]["bf16"] == 989.0


def test_step_bench_runs(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    step = importlib.import_module("step_bench")
    step.main([
        "--models", "small3d", "vit_micro", "--batch", "1", "--frames", "4", "--size", "32",
        "--dtypes", "fp32", "--compile", "off", "--memory-format", "contiguous",
        "--warmup", "1", "--steps", "1", "--device", "cpu", "--threads", "1",
    ])
    out = capsys.readouterr().out
    assert "failed" not in out
    for model in ("small3d", "vit_micro"):
        (row,) = table_rows(out, model)
        ms, clips_s, gflop_clip, achieved = (float(c) for c in row[5:9])
        assert ms > 0 and clips_s > 0 and gflop_clip > 0 and achieved >= 0
        assert row[9] == ""  # no MFU on a CPU without --peak-tflops


def test_svt_bench_runs(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    svt = importlib.import_module("svt_bench")
    svt.main([
        "--models", "vit_tiny", "--batch", "1", "--dtypes", "fp32", "--global-size", "32",
        "--local-size", "16", "--frames-div", "4", "--out-dim", "64", "--warmup", "1",
        "--steps", "1", "--device", "cpu", "--threads", "1",
    ])
    out = capsys.readouterr().out
    assert "failed" not in out
    # the paper's 10 views (2 global + 2 of each of 4 local frame counts), frames / 4
    assert "global_1 2x32" in out and "local_t16_1 4x16" in out and "local_t2_0 1x16" in out
    (row,) = table_rows(out, "vit_tiny")
    ms, videos_s, clips_s, gflop_video = (float(c) for c in row[4:8])
    assert ms > 0 and gflop_video > 0
    assert clips_s == pytest.approx(10 * videos_s, rel=0.02, abs=1)


def test_overhead_bench_runs(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    overhead = importlib.import_module("overhead_bench")
    for mode in ("steps", "rounds"):
        overhead.main([
            "--threads", "1", "--device", "cpu", "--interleave", mode, "--rounds", "1",
            "--warmup", "1", "--steps", "2", "--set", *TINY,
        ])
        out = capsys.readouterr().out
        ratios = re.findall(r"ssvrl / minimal \((wall|CPU) time\): ([0-9.]+)", out)
        assert [w for w, _ in ratios] == (["wall", "CPU"] if mode == "steps" else ["wall"])
        assert all(math.isfinite(float(r)) and float(r) > 0 for _, r in ratios)
        (row,) = table_rows(out, "minimal loop")
        assert float(row[1].split(" / ")[0]) > 0


def test_e2e_bench_runs(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    e2e = importlib.import_module("e2e_bench")
    e2e.main([
        "--threads", "1", "--device", "cpu", "--workers", "0", "--synth-classes", "1",
        "--synth-groups", "3", "--synth-frames", "24", "--synth-workers", "0",
        "--warmup", "1", "--steps", "2", "--set", *TINY,
    ])
    out = capsys.readouterr().out
    (real,) = table_rows(out, "ssvrl fit, real loader")
    (memory,) = table_rows(out, "ssvrl fit, batches in memory")
    assert float(real[1]) > 0 and float(real[2]) > 0 and memory[3] == "1.00x"
    (loader,) = table_rows(out, "loader alone (no training)")
    assert float(loader[2]) > 0


class HostToDevice(TorchDispatchMode):
    """Counts copies from CPU tensors to the ``meta`` device (standing in for a GPU): on CUDA a
    blocking one synchronises the stream. Blind spot: ``torch.tensor(..., device=...)``
    dispatches no copy op and is not seen."""

    def __init__(self) -> None:
        super().__init__()
        self.blocking = self.non_blocking = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        target = kwargs.get("device")
        if (func.overloadpacket.__name__ == "_to_copy" and args[0].device.type == "cpu"
                and target is not None and torch.device(target).type == "meta"):
            if kwargs.get("non_blocking", False):
                self.non_blocking += 1
            else:
                self.blocking += 1
        return func(*args, **kwargs)


def test_augmentation_makes_no_blocking_host_to_device_copy() -> None:
    with HostToDevice() as probe:  # the probe sees blocking and non-blocking copies
        torch.ones(3).to("meta")
        torch.ones(3).to("meta", non_blocking=True)
    assert (probe.blocking, probe.non_blocking) == (1, 1)
    # every op of the recipe, on sub-batches (p = 0.5) and whole batches (p = 1)
    for p in (0.5, 1.0):
        cfg = AugmentConfig(jitter_p=p, grayscale_p=p, blur_p=p, solarize_p=p, flip_p=p)
        aug = VideoAugment(cfg).to("meta")  # the module on the device, as the engine has it
        x = torch.empty(16, 3, 4, 40, 40, dtype=torch.uint8, device="meta")
        with HostToDevice() as probe:
            out = aug(x, torch.arange(16))
        assert out.shape == (16, 3, 4, 112, 112)
        assert probe.blocking == 0 and probe.non_blocking > 0


def test_gpu_script_is_not_collected_and_names_every_benchmark() -> None:
    script = (BENCH / "gpu_all.sh").read_text()
    for name in ("step_bench.py", "svt_bench.py", "e2e_bench.py", "overhead_bench.py",
                 "loader_bench.py", "augment_bench.py"):
        assert name in script
    assert "torch.cuda.is_available()" in script  # refuses to run without a GPU
