"""Mixed-precision numerics of every loss and logit computation (ssvrl.losses.precision).

Known answers: under bf16 autocast a plain matmul of unit vectors is off by ~1e-2 (8-bit
mantissa), so logits matching float64 to 1e-5 prove the float32 path; extreme embeddings (norms
1e4 and 1e-8, identical rows, all-zero rows) must give finite losses and finite gradients in
float32 and bf16. fp16 (CPU autocast, embeddings cast to half): finite loss, no NaN anywhere;
a row below fp16's range (norm 1e-8 underflows to 0) has a normalisation gradient of 1/eps,
which overflows half to inf, as Lightning's GradScaler (``16-mixed``) expects and skips.
Then a 2-step ``bf16-mixed`` CPU fit of every built-in objective, with oneDNN off: its bf16
conv3d weight gradient is wrong on AVX512-BF16 CPUs for small strided maps (torch 2.13)::

    w = torch.randn(32, 16, 3, 3, 3).bfloat16()
    x, g = torch.randn(48, 16, 2, 2, 2).bfloat16(), torch.randn(48, 32, 2, 1, 1).bfloat16()
    gw = torch.ops.aten.convolution_backward(g, x, w, None, [1, 2, 2], [1, 1, 1], [1, 1, 1],
                                             False, [0, 0, 0], 1, [False, True, False])[1]
    gw.isnan().any()  # True with oneDNN; False under torch.backends.mkldnn.flags(enabled=False)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssvrl.cli import load_experiment, main
from ssvrl.config.errors import ConfigError
from ssvrl.losses.dino import dino_loss, view_pairs
from ssvrl.losses.info_nce import info_nce
from ssvrl.losses.precision import MIN_TEMPERATURE, check_temperature, cosine_logits
from ssvrl.objectives import OBJECTIVES
from ssvrl.objectives.addons import alignment_terms
from ssvrl.objectives.moco import moco_logits
from ssvrl.objectives.teg import fine_grained_nce
from tests.test_objectives import _fit_overrides

B, D = 4, 8
ROOT = Path(__file__).resolve().parents[1]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _moco(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    queue = F.normalize(torch.randn(6, D, generator=torch.Generator().manual_seed(1)), dim=1)
    q, k = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    return F.cross_entropy(moco_logits(q, k, queue, 0.07), torch.zeros(B, dtype=torch.long))


def _dino(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    s, t = a.view(1, B, D).repeat(2, 1, 1), b.view(1, B, D).repeat(2, 1, 1)  # (2, B, K)
    return dino_loss(s, t, torch.zeros(D), view_pairs(["g0", "g1"], ["g0", "g1"]), 0.1, 0.04)


def _teg(cross: bool) -> Loss:
    match = torch.tensor([[0, 1], [1, 0]])  # (B', T_s) for B' = 2 videos of 2 steps
    return lambda a, b: fine_grained_nce(a.view(2, 2, D), b.view(2, 2, D), match, 0.1,
                                         cross_video=cross)  # fmt: skip


def _align(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    sal, motion = F.relu(a).reshape(2, 2, 2, 4), b.abs().detach().reshape(2, 2, 2, 4)
    return sum(alignment_terms(sal, motion).values())  # type: ignore[return-value]


LOSSES: dict[str, Loss] = {
    "info_nce": lambda a, b: info_nce(a, b, 0.1),
    "info_nce_repeats": lambda a, b: info_nce(a, b, 0.1, video_ids=torch.tensor([0, 0, 1, 1])),
    "moco": _moco,
    "dino": _dino,
    "teg_fine": _teg(True),
    "teg_fine_own_clip": _teg(False),  # every other video's steps masked
    "motion_align": _align,
}


def _embeddings(case: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    if case == "huge":
        return a * 1e4, b * 1e4
    if case == "tiny":
        return a * 1e-8, b * 1e-8
    if case == "identical":
        return a[:1].repeat(B, 1), a[:1].repeat(B, 1)
    a[1] = 0.0  # one zero row among normal ones, and an all-zero second view
    return a, torch.zeros(B, D)


@pytest.mark.parametrize("mode", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("case", ["huge", "tiny", "identical", "zero"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_extreme_embeddings_give_finite_loss_and_gradients(name: str, case: str, mode: str
                                                           ) -> None:  # fmt: skip
    a0, b0 = _embeddings(case)
    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        x, y = (a.to(dtype), b.to(dtype)) if dtype else (a, b)  # the head's output dtype
        loss = LOSSES[name](x, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss), float(loss)
    loss.backward()
    grads = [t.grad for t in (a, b) if t.grad is not None]
    assert grads and not any(g.isnan().any() for g in grads)
    if mode != "fp16" or case in ("huge", "identical"):
        assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_logits_are_float32_under_autocast(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(2)
    q, k = F.normalize(torch.randn(8, 64, generator=g), dim=1), torch.randn(8, 64, generator=g)
    k, queue = F.normalize(k, dim=1), F.normalize(torch.randn(32, 64, generator=g), dim=1)
    ref = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1).double() / 0.07
    with torch.autocast("cpu", dtype=dtype):
        low = q @ queue.T  # what a plain matmul gives under autocast
        got, cos = moco_logits(q, k, queue, 0.07), cosine_logits(q, queue, 0.07)
        nce = info_nce(q.to(dtype), k.to(dtype), 0.07)
    assert low.dtype == dtype  # the hazard is real on this torch
    assert got.dtype == cos.dtype == torch.float32
    assert torch.allclose(got.double(), ref, atol=1e-5)
    assert torch.allclose(cos.double(), ref[:, 1:], atol=1e-5)
    assert torch.allclose(nce, info_nce(q.to(dtype).float(), k.to(dtype).float(), 0.07))


def test_fully_masked_negatives_keep_finite_gradients() -> None:
    # All rows one video: every negative masked, only the positives remain -> loss 0, grad 0.
    z1, z2 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    loss = info_nce(z1, z2, 0.1, video_ids=torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.abs() < 1e-6 and torch.isfinite(z1.grad).all()  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0.0, -0.1, 1e-4, math.nan, math.inf])
def test_temperature_bound(bad: float) -> None:
    with pytest.raises(ValueError, match=f">= {MIN_TEMPERATURE:g}"):
        check_temperature(bad)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.randn(2, 4), torch.randn(2, 4), bad)
    assert check_temperature(MIN_TEMPERATURE) == MIN_TEMPERATURE


@pytest.mark.parametrize(
    "objective,key",
    [("cvrl", "temperature"), ("simclr", "temperature"), ("moco", "temperature"),
     ("teg", "temperature"), ("svt", "student_temp"), ("svt", "teacher_temp")],
)  # fmt: skip
def test_temperature_is_checked_at_config_time(objective: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"objective.{key} must be a finite number >= 0.001"):
        load_experiment(None, [f"objective.name={objective}", f"objective.{key}=1e-4"])
    load_experiment(None, [f"objective.name={objective}", f"objective.{key}=0.05"])  # fine


# ------------------------------------------------------------------ bf16-mixed CPU fits
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth_bf16")
    spec = SynthSpec(num_classes=3, groups=4, clips_per_group=2, frames=40, seed=4)
    write_synthetic_dataset(out, spec, workers=1)
    return out


BUILT_IN = [n for n in OBJECTIVES.names() if OBJECTIVES.get(n).__module__.startswith("ssvrl.")]


@pytest.mark.parametrize("name", BUILT_IN)
def test_bf16_mixed_fit_gives_finite_losses(name: str, tiny_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "bf16.yaml"
    base = ROOT / "experiments" / "_base"
    config.write_text(f"inherit: [{base / 'synthetic.yaml'}, {base / 'cpu.yaml'}]\n")
    overrides = [*_fit_overrides(name, tiny_data, tmp_path), "trainer.precision=bf16-mixed",
                 "trainer.max_steps=2", "trainer.log_every_n_steps=1"]  # fmt: skip
    # oneDNN's bf16 conv3d weight gradient is garbage (NaN, or off by 1e35) for small strided
    # maps on this CPU (torch 2.13, oneDNN 3.12; standalone repro in the module docstring):
    # a torch bug, not ssvrl's. Without oneDNN the same convolutions are exact, so this test
    # checks ssvrl's own numerics.
    with torch.backends.mkldnn.flags(enabled=False):
        assert main(["fit", str(config), *overrides]) == 0
    rows = list(csv.DictReader((tmp_path / f"smoke_{name}" / "version_0" / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
