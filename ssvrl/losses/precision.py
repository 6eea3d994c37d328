"""Numerics shared by every loss: float32 logits under mixed precision, finite masking, and
the temperature bound.

Why float32: under ``torch.autocast`` (``trainer.precision=bf16-mixed`` / ``16-mixed``) a matmul
runs in the low-precision dtype even when its inputs are float32. A bf16 logit keeps 8
significant bits, so at ``1 / tau = 14`` (MoCo's tau 0.07) neighbouring similarities 0.06 apart
collapse into one value; fp16 overflows past 65504 and turns a ``-1e9`` mask into ``-inf``. So
similarities, logits and the softmax run inside :func:`float32_math` (autocast off, inputs
cast up); gradients still flow back to the low-precision embeddings.

Why a finite mask: a masked logit of ``-inf`` gives NaN as soon as a row is entirely masked or
the logsumexp subtracts ``-inf`` from ``-inf``; :data:`MASKED_LOGIT` is large enough that
``exp`` of it is exactly 0 in float32 and small enough to stay finite after any subtraction.

Limit: normalising a row of norm ``n`` has a gradient of order ``1 / max(n, 1e-12)``. It is
finite in float32 and bf16 (same exponent range), but for rows below fp16's range (a zero
row, or norm 1e-8, which rounds to 0 in half) the gradient handed back to a half-precision
input overflows to inf: with ``16-mixed`` Lightning's GradScaler detects it and skips the step.

Why a temperature bound: logits are similarities in [-1, 1] over tau; at tau 1e-3 they reach
1e3 and the softmax is already one-hot in float32, below that gradients vanish or the division
overflows. Every temperature (objective configs and loss arguments) is checked against
:data:`MIN_TEMPERATURE` with a message naming the setting.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

MIN_TEMPERATURE = 1e-3
MASKED_LOGIT = -1e9  # exp(-1e9 - max) == 0 in float32; -1e9 - (-1e9) == 0, never NaN


def check_temperature(value: float, name: str = "temperature") -> float:
    """``value`` when it is a finite number >= :data:`MIN_TEMPERATURE`; else ValueError naming
    ``name`` (the config key or argument)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < MIN_TEMPERATURE:
        raise ValueError(
            f"{name} must be a finite number >= {MIN_TEMPERATURE:g}, got {value!r} (logits are "
            f"similarities / temperature; below {MIN_TEMPERATURE:g} the softmax is one-hot in "
            "float32; typical values 0.04-0.2)"
        )
    return float(value)


@contextmanager
def float32_math(x: torch.Tensor) -> Iterator[None]:
    """Autocast off on ``x``'s device type for the block; cast the block's inputs with
    ``.float()`` (see the module docstring)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield


def unit_rows(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``x`` in float32, L2-normalised along ``dim``; all-zero rows stay zero (norm clamped at
    1e-12, so no division by zero and a zero, not NaN, gradient)."""
    return F.normalize(x.float(), dim=dim, eps=1e-12)


def cosine_logits(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(N, D)`` and ``(M, D)`` -> ``(N, M)`` float32 ``cos(a_i, b_j) / temperature``, computed
    with autocast off whatever the caller's precision."""
    check_temperature(temperature)
    with float32_math(a):
        return unit_rows(a) @ unit_rows(b).T / temperature  # (N, M)
