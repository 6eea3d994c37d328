"""FLOP counting and model FLOPs utilisation (MFU) for the benchmarks.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on a real call (a
forward and backward of the training step): it counts matrix multiplies, convolutions and
attention, ``2 * M * N * K`` per multiply-accumulate, at the dispatcher level, so it sees the
ops the step really runs (e.g. a first convolution whose input needs no gradient costs one
backward product, not two). Elementwise ops, norms and the optimizer are not counted, as in
the usual MFU definition (PaLM, Chowdhery et al. 2022, Appendix B: model FLOPs / peak FLOPs).

PyTorch's CPU attention kernel (``_scaled_dot_product_flash_attention_for_cpu``) has no
formula in the counter (it counts 0); :data:`CPU_ATTENTION` adds torch's own SDPA formulas
for it, so a ViT counts the same on a CPU as on a GPU.

MFU = achieved model FLOP/s / the device's dense peak for the dtype. :data:`PEAK_TFLOPS` lists
the vendors' dense (no sparsity) tensor-core peaks; fp32 is compared with the TF32 peak, which
cuDNN convolutions use by default in PyTorch (``torch.backends.cudnn.allow_tf32``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

# Dense peaks in TFLOPS by (device-name fragment, dtype); first match wins, so put the more
# specific fragment first. Sources: NVIDIA H200 / H100 / A100 / L40S data sheets.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.0, "fp32": 494.0}),  # H200 SXM: BF16 989, TF32 494 (dense)
    ("H100 PCIe", {"bf16": 756.0, "fp32": 378.0}),
    ("H100", {"bf16": 989.0, "fp32": 494.0}),  # H100 SXM
    ("A100", {"bf16": 312.0, "fp32": 156.0}),
    ("L40S", {"bf16": 362.0, "fp32": 183.0}),
)


def _sdpa_fwd(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
    return int(sdpa_flop_count(q, k, v))


def _sdpa_bwd(g: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
    return int(sdpa_backward_flop_count(g, q, k, v))


def _cpu_attention_formulas() -> dict[Any, Callable[..., int]]:
    aten = torch.ops.aten
    found: dict[Any, Callable[..., int]] = {}
    for name, fn in (
        ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_fwd),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_bwd),
    ):
        if hasattr(aten, name):  # absent in older torch builds
            found[getattr(aten, name)] = fn
    return found


CPU_ATTENTION = _cpu_attention_formulas()


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (run once, for real, under the counter)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_tflops(device: torch.device, dtype: str, override: float | None = None) -> float | None:
    """The dense peak of ``device`` for ``dtype`` ("bf16" / "fp32") in TFLOPS: ``override``
    when given, else :data:`PEAK_TFLOPS` by the CUDA device name; None when unknown (CPUs)."""
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, peaks in PEAK_TFLOPS:
        if fragment in name:
            return peaks.get(dtype)
    return None


def mfu_cell(flops_per_s: float, peak: float | None) -> str:
    """MFU as a percentage string, blank when no peak is known."""
    return "" if peak is None else f"{100.0 * flops_per_s / (peak * 1e12):.1f}%"
