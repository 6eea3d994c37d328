"""The GPU checks, each run on every device here: the CPU always (so CI proves the test logic),
CUDA when there is one. ``pytest tests/test_gpu.py -m gpu`` runs only the CUDA variants.

1. device-side augmentation keeps identical frames identical, with the CPU's result;
2. it makes no host-device synchronisation (``torch.cuda.set_sync_debug_mode("error")``);
3. a short real Lightning fit of every built-in objective from its quickstart config
   (bf16-mixed on CUDA) on in-memory uint8 batches: finite loss, weights moved, all on the device;
4. RNG capture / restore covers the device's generator;
5. a NaN step under the non-finite guard leaves weights and buffers bitwise unchanged;
6. InfoNCE and the DINO loss under bf16 autocast match a float64 reference.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ssvrl.augment import MultiViewAugment, VideoAugment, sample_params
from ssvrl.cli import load_experiment
from ssvrl.config.schema import OptimConfig
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.engine.build import build_encoder, build_objective, build_trainer, make_run_dir
from ssvrl.engine.module import PretrainModule
from ssvrl.engine.rng_state import capture, restore
from ssvrl.losses.dino import dino_loss, view_pairs
from ssvrl.losses.info_nce import info_nce
from ssvrl.objectives import OBJECTIVES
from tests.test_nonfinite import Batches, NaNAt, Recorder, _equal
from tests.test_objectives import _build, _moving_clips

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(does not have many workers|validation_step|overridden|lr_scheduler.step).*"
)
ROOT = Path(__file__).resolve().parents[1]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ON = [pytest.param(d, id=d, marks=[pytest.mark.gpu] if d == "cuda" else []) for d in DEVICES]
PRECISION = {"cpu": "32-true", "cuda": "bf16-mixed"}
ACCELERATOR = {"cpu": "cpu", "cuda": "gpu"}
# Objectives shipped with ssvrl (plugins have no quickstart here); independent of import order.
BUILTIN = [n for n in OBJECTIVES.names() if OBJECTIVES.get(n).__module__.startswith("ssvrl.")]


def quickstart(name: str, overrides: list[str] | None = None) -> Any:
    """``experiments/<name>/quickstart.yaml`` through the real loader (as ``ssvrl fit``)."""
    return load_experiment(str(ROOT / "experiments" / name / "quickstart.yaml"), overrides or [])


# ------------------------------------------------------------- 1. frame-consistent augmentation
@contextmanager
def full_fp32() -> Iterator[None]:
    """No TF32 in the block: cuDNN convolutions (the blur) may use it by default on CUDA
    (``torch.backends.cudnn.allow_tf32``), with 10-bit mantissas (errors ~1e-3)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("device", ON)
def test_augmentation_keeps_identical_frames_identical(device: str) -> None:
    """Every view recipe of CVRL's quickstart, plus one with every op likely on (flip, blur,
    solarize too): a clip of T copies of one frame comes out as T copies of one frame, float32,
    in range, and, without TF32, as the CPU computes it (atol 1e-4 on normalised values:
    float32 rounding of different kernels is ~1e-6 here; a wrong crop or colour op moves values
    by >1e-2)."""
    views = build_objective(quickstart("cvrl"), 16).views()
    recipes = list(dict.fromkeys(v.augment for v in views))  # clip1, clip2: one recipe
    recipes.append(dataclasses.replace(
        recipes[0], flip_p=0.5, jitter_p=1.0, grayscale_p=0.5, blur_p=0.5, solarize_p=0.5
    ))  # fmt: skip
    B, T, H = 8, 4, 64
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (B, 3, 1, H, H), generator=g, dtype=torch.uint8)
    clips = clips.repeat(1, 1, T, 1, 1)  # (B, 3, T, H, H): one image repeated over time
    seeds = torch.arange(B) + 7
    for recipe in recipes:
        p = sample_params(recipe, seeds, (H, H))  # the seeds exercise the recipe's ops
        assert p.jitter.any() and p.gray.any() and not p.gray.all()
        assert (p.blur_sigma > 0).any() == (recipe.blur_p > 0)
        assert p.flip.any() == (recipe.flip_p > 0)
        y = VideoAugment(recipe).to(device)(clips.to(device), seeds)
        S = recipe.crop_size
        assert y.device.type == device and y.dtype == torch.float32 and y.shape == (B, 3, T, S, S)
        torch.testing.assert_close(y, y[:, :, :1].expand_as(y), atol=1e-5, rtol=0)
        mean = torch.tensor(recipe.mean, device=device).view(1, 3, 1, 1, 1)
        unit = y * torch.tensor(recipe.std, device=device).view(1, 3, 1, 1, 1) + mean
        assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5 and unit.std() > 0.05
        exact = y
        if device != "cpu":
            with full_fp32():
                exact = VideoAugment(recipe).to(device)(clips.to(device), seeds)
        torch.testing.assert_close(exact.cpu(), VideoAugment(recipe)(clips, seeds), atol=1e-4,
                                   rtol=0)  # fmt: skip


# ------------------------------------------------------------------- 2. no host-device syncs
@contextmanager
def sync_errors(device: str) -> Iterator[None]:
    """CUDA: any synchronising call (``.item()``, a blocking copy, ``nonzero``) raises inside the
    block. CPU: nothing to check (no device to synchronise with)."""
    if device != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("device", ON)
@pytest.mark.parametrize("name", ["cvrl", "fame"])
def test_augmentation_makes_no_host_sync(device: str, name: str) -> None:
    """The engine's ``MultiViewAugment`` on device uint8 clips with host seeds, as
    ``PretrainModule.on_after_batch_transfer`` runs it; FAME adds its mask and merge. (MCL's
    motion crop reads one index back per view by design and is not checked.)"""
    views = build_objective(quickstart(name), 16).views()
    aug = MultiViewAugment(views).to(device)
    g, B = torch.Generator().manual_seed(0), 8
    clips = {v.name: _moving_clips(B, v.frames, g, size=64).to(device) for v in views}
    seeds = {v.name: torch.arange(B) + 100 * k for k, v in enumerate(views)}  # host, as the loader
    aug(clips, seeds)  # warm-up: one-time initialisation is not a per-step sync
    with sync_errors(device):
        if device == "cuda":  # the mode is on: a sync does raise
            with pytest.raises(RuntimeError, match="synchroniz"):
                torch.ones((), device=device).item()
        out = aug(clips, seeds)
    assert {v.name for v in views} <= set(out)
    for key, y in out.items():
        assert y.device.type == device and y.dtype == torch.float32, key
        assert torch.isfinite(y).all(), key
    if name == "fame":
        assert any(k.endswith("/fame_mask") for k in out)


# ----------------------------------------------------------- 3. a short fit of every objective
SMALL = {"frames": 4, "long_frames": 8, "short_frames": 4, "proj_hidden": 32, "proj_dim": 16,
         "bottleneck_dim": 16, "out_dim": 64, "queue_size": 16}  # fmt: skip
STEPS, FIT_B = 3, 4


def shrink(cfg: Any) -> list[str]:
    """Overrides making the quickstart CPU-small: few frames, 32 px crops (16 px local views),
    tiny heads, a 4-wide small3d, batch 4."""
    obj = cfg.objective
    have = {f.name for f in dataclasses.fields(obj)}
    out = [f"objective.{k}={v}" for k, v in SMALL.items() if k in have]
    if "augment" in have:
        out.append("objective.augment.crop_size=32")
    if "views" in have:  # SVT's view list: same names, counts and recipes, smaller
        views = [
            {**dataclasses.asdict(v), "frames": min(v.frames, 4),
             "augment": {**dataclasses.asdict(v.augment), "crop_size": 32 if i == 0 else 16}}
            for i, v in enumerate(obj.views)
        ]  # fmt: skip
        out.append("objective.views=" + json.dumps(views))  # JSON is YAML
    if cfg.backbone.name == "small3d":
        out.append("backbone.width=4")
    return [*out, f"data.batch_size={FIT_B}", "data.num_workers=0", "optim.warmup_epochs=0"]


def fit_batches(views: Any, n: int) -> list[dict[str, Any]]:
    """``n`` collated uint8 batches as the loader makes them (moving squares: MCL and FAME
    find motion); seeds stay int64 on the host."""
    g = torch.Generator().manual_seed(0)
    return [{
        "views": {v.name: _moving_clips(FIT_B, v.frames, g, size=40) for v in views},
        "seeds": {v.name: torch.arange(FIT_B) + 100 * k + 1000 * i for k, v in enumerate(views)},
        "label": torch.zeros(FIT_B, dtype=torch.long),
        "index": torch.arange(FIT_B) + FIT_B * i,
    } for i in range(n)]  # fmt: skip


class DeviceProbe(pl.Callback):
    """The augmented views and each step's loss, as the module sees them."""

    def __init__(self) -> None:
        self.views: list[dict[str, torch.Tensor]] = []
        self.losses: list[torch.Tensor] = []
        self.devices: set[str] = set()  # where every parameter, buffer and moment sat
        self.wrong: list[str] = []  # ... and those that were not on the run's device

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:  # fmt: skip
        self.views.append(dict(batch["views"]))

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:  # fmt: skip
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(loss.detach())
        # During training: Lightning's teardown moves the module back to the CPU after fit.
        where = module.device.type
        tensors = [*module.named_parameters(), *module.named_buffers()]
        for state in trainer.optimizers[0].state.values():  # Adam moments ("step": a host count)
            tensors += [(k, t) for k, t in state.items() if torch.is_tensor(t) and k != "step"]
        self.devices |= {t.device.type for _, t in tensors}
        self.wrong = [k for k, t in tensors if t.device.type != where]


@pytest.mark.parametrize("device", ON)
@pytest.mark.parametrize("name", BUILTIN)
def test_short_fit_of_every_objective(device: str, name: str, tmp_path: Path) -> None:
    base = quickstart(name)
    assert base.objective.name == name
    cfg = quickstart(name, [
        *shrink(base), f"out_dir={tmp_path}", f"trainer.accelerator={ACCELERATOR[device]}",
        "trainer.devices=1", "trainer.strategy=auto", f"trainer.precision={PRECISION[device]}",
        f"trainer.max_steps={STEPS}", "trainer.max_epochs=1", "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
    ])  # fmt: skip
    torch.manual_seed(cfg.seed)
    backbone = build_encoder(cfg)
    objective = build_objective(cfg, backbone.num_features)
    module = PretrainModule(  # as ssvrl.engine.build.build_pretrain makes it
        backbone, objective, cfg.optim, cfg.data.batch_size,
        max_nonfinite_steps=cfg.trainer.max_nonfinite_steps,
        collapse_warn_std=cfg.trainer.collapse_warn_std,
    )  # fmt: skip
    before = {k: p.detach().clone() for k, p in backbone.named_parameters()}
    run_dir = make_run_dir(cfg)
    trainer = build_trainer(cfg, run_dir, BadVideoLog(run_dir / "bad_videos", 1, 1.0))
    probe = DeviceProbe()
    trainer.callbacks.append(probe)
    loader = DataLoader(fit_batches(objective.views(), STEPS), batch_size=None,
                        pin_memory=device == "cuda")  # fmt: skip
    trainer.fit(module, train_dataloaders=loader)

    assert trainer.global_step == STEPS and module.guard.skipped == 0  # no step was skipped
    losses = torch.stack(probe.losses)
    assert losses.shape == (STEPS,) and losses.device.type == device
    assert torch.isfinite(losses).all(), losses
    for views in probe.views:  # augmented on the device, float32 whatever the precision
        assert all(v.device.type == device and v.dtype == torch.float32 for v in views.values())
    unchanged = [k for k, p in backbone.named_parameters() if torch.equal(p.cpu(), before[k])]
    assert unchanged == []
    assert probe.devices == {device} and probe.wrong == []  # all on the device while training


# ------------------------------------------------------------------------- 4. RNG states
@pytest.mark.parametrize("device", ON)
def test_rng_capture_and_restore_cover_the_device(device: str, tmp_path: Path) -> None:
    torch.randn(1, device=device)  # CUDA: initialised, so its generators are captured
    torch.save({"rng": capture()}, tmp_path / "rng.ckpt")  # as a checkpoint holds it
    state = torch.load(tmp_path / "rng.ckpt", weights_only=True)["rng"]
    assert "torch" in state and (device == "cpu" or "cuda" in state)
    first = torch.randn(1000, device=device)
    assert not torch.equal(torch.randn(1000, device=device), first)  # the generator moved on
    restore(state)
    assert torch.equal(torch.randn(1000, device=device), first)


# ------------------------------------------------------------------ 5. the non-finite guard
@pytest.mark.parametrize("device", ON)
def test_nan_step_leaves_weights_and_buffers_bitwise_unchanged(device: str) -> None:
    """MoCo (batch norm everywhere, a queue, a key encoder); step 1's views are NaN."""
    encoder, objective = _build("moco", width=4)
    module = NaNAt(encoder, objective, OptimConfig(warmup_epochs=0), 4, max_nonfinite_steps=5)
    module.nan_steps = frozenset({1})
    rec = Recorder()
    trainer = pl.Trainer(
        accelerator=ACCELERATOR[device], devices=1, precision=PRECISION[device], max_steps=3,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[rec],
    )  # fmt: skip
    trainer.fit(module, DataLoader(Batches(list(objective.views()), 3), batch_size=None))
    before, after = rec.states[1], rec.states[2]  # around the NaN step
    assert all(v.device.type == device for v in before.values())
    assert "objective.queue" in before and any(".running_var" in k for k in before)
    assert _equal(before, after) == []  # parameters, BN statistics, queue, key encoder
    assert rec.opt_steps[2] == rec.opt_steps[1]  # no optimizer step either
    changed = _equal(rec.states[2], rec.states[3])  # the next good step updates again
    assert any(k.startswith("backbone.") for k in changed) and "objective.queue" in changed
    assert module.guard.skipped == 1 and trainer.global_step == 3


# ------------------------------------------------------------ 6. losses under bf16 autocast
# Both losses compute in float32 under any autocast (ssvrl.losses.precision). Bound: float32's
# unit roundoff 6e-8 times logits of at most ~|1/tau| = 10 (InfoNCE) or ~100 (DINO's teacher at
# tau 0.04), over a few accumulation steps: ~1e-5 at worst; measured on the CPU: 2e-7 (InfoNCE)
# and 2e-6 (DINO, a loss of ~29). A bf16 path (8 significant bits: logits off by up to
# 10 * 2**-9 = 0.02) misses by 2.5e-4 (InfoNCE) and 3e-3 (DINO) here: the controls below, done
# on the CPU with explicit rounding so that they do not depend on the device, check that the
# bounds would catch one.
NCE_TOL = dict(atol=1e-5, rtol=0.0)
DINO_TOL = dict(atol=5e-5, rtol=0.0)


def nce_from_similarities(sims: torch.Tensor, tau: float) -> torch.Tensor:
    """CVRL Eq. 1 in float64 on the CPU from (2B, 2B) cosine similarities of the 2B clips
    (view-major): cross-entropy of each clip's positive over the 2B - 1 other clips."""
    B = sims.shape[0] // 2
    logits = (sims.double().cpu() / tau).fill_diagonal_(float("-inf"))  # no self-pairs
    return F.cross_entropy(logits, torch.cat([torch.arange(B, 2 * B), torch.arange(B)]))


def embeddings(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(16, 128) pairs; positives at cosine ~0.55 (logits ~5.5, loss ~0.13)."""
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(16, 128, generator=g)
    z2 = z1 + 1.5 * torch.randn(16, 128, generator=g)
    return z1.to(device, dtype), z2.to(device, dtype)


@pytest.mark.parametrize("device", ON)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_info_nce_under_bf16_autocast_matches_float64(device: str, dtype: torch.dtype) -> None:
    """Inputs as a float32 or a bf16 projection head gives them; the reference takes the very
    same (rounded) values in float64."""
    z1, z2 = (z.requires_grad_() for z in embeddings(device, dtype))
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = info_nce(z1, z2, 0.1)
    assert loss.device.type == device and loss.dtype == torch.float32
    r1, r2 = (z.detach().double().cpu().requires_grad_() for z in (z1, z2))
    unit = F.normalize(torch.cat([r1, r2]), dim=1)  # (2B, D) float64
    ref = nce_from_similarities(unit @ unit.T, 0.1)
    torch.testing.assert_close(loss.detach().cpu().double(), ref.detach(), **NCE_TOL)
    loss.backward()
    ref.backward()
    assert z1.grad is not None and z1.grad.dtype == dtype and r1.grad is not None
    # gradients ~4e-3: float32 ones measured 2e-9 off; bf16 ones carry one bf16 rounding
    grad_tol = dict(atol=1e-6, rtol=1e-4 if dtype == torch.float32 else 2**-8)
    torch.testing.assert_close(z1.grad.cpu().double(), r1.grad, **grad_tol)
    low = unit.detach().float().bfloat16().float()  # control: a bf16 matmul's similarities
    naive = nce_from_similarities((low @ low.T).bfloat16(), 0.1)
    assert (naive - ref.detach()).abs() > 10 * NCE_TOL["atol"]


@pytest.mark.parametrize("device", ON)
def test_contrastive_loss_makes_no_host_sync(device: str) -> None:
    """InfoNCE with and without repeated-video masking, forward and backward: no host sync on
    CUDA (its masks once came from ``mask[rows, idx] = True``, a blocking copy per step that
    the overhead benchmark's sync report found on an H200)."""
    z1, z2 = (z.requires_grad_() for z in embeddings(device, torch.float32))
    ids = (torch.arange(16) // 2).to(device)  # pairs of samples from one video
    info_nce(z1, z2, 0.1).backward()  # warm-up: one-time initialisation is not a per-step sync
    with sync_errors(device):
        for video_ids in (None, ids):
            loss = info_nce(z1, z2, 0.1, video_ids=video_ids)
            loss.backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all()


def ref_dino(
    s: torch.Tensor, t: torch.Tensor, c: torch.Tensor, pairs: list[tuple[int, int]],
    tau_s: float, tau_t: float, log_p: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """DINO Eq. 3 in float64 on the CPU: mean over pairs of the batch-mean H(P_t, P_s);
    ``log_p`` replaces the student's log-probabilities (the control)."""
    q = F.softmax((t.double().cpu() - c.double().cpu()) / tau_t, dim=-1)  # (Vt, B, K)
    if log_p is None:
        log_p = F.log_softmax(s.double().cpu() / tau_s, dim=-1)  # (Vs, B, K)
    return torch.stack([-(q[i] * log_p[j].double()).sum(-1).mean() for i, j in pairs]).mean()


@pytest.mark.parametrize("device", ON)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_dino_loss_under_bf16_autocast_matches_float64(device: str, dtype: torch.dtype) -> None:
    """SVT's quickstart layout: 2 global teacher views, 2 global + 4 local student views,
    K = 256, tau_s 0.1, tau_t 0.04."""
    g = torch.Generator().manual_seed(0)
    student = torch.randn(6, 8, 256, generator=g).to(device, dtype)
    teacher = torch.randn(2, 8, 256, generator=g).to(device, dtype)
    center = (torch.randn(1, 256, generator=g) * 0.5).to(device)
    pairs = view_pairs(["g0", "g1"], ["g0", "g1", "l0", "l1", "l2", "l3"])
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = dino_loss(student, teacher, center, pairs, 0.1, 0.04)
    assert loss.device.type == device and loss.dtype == torch.float32
    ref = ref_dino(student, teacher, center, pairs, 0.1, 0.04)
    torch.testing.assert_close(loss.cpu().double(), ref, **DINO_TOL)
    logits = (student.double().cpu() / 0.1).bfloat16().double()  # control: a bf16 log-softmax
    low = F.log_softmax(logits, dim=-1).bfloat16()
    naive = ref_dino(student, teacher, center, pairs, 0.1, 0.04, log_p=low)
    assert (naive - ref).abs() > 10 * DINO_TOL["atol"]
