"""The non-finite guard (issue #8): a NaN step is a true skip (parameters, buffers, MoCo's queue
and key encoder, optimizer state all bitwise unchanged), training goes on and the next step
updates; several in a row stop the run with a clear message; 16-mixed's GradScaler overflow
steps are not counted. Real Lightning runs on CPU with in-memory batches (no decoding).

The two-process case (a NaN loss on ONE rank, finite gradients, both ranks skip and stay
identical) runs under torchrun in ``tests/test_ddp_bad_videos.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssvrl.config.schema import OptimConfig
from ssvrl.engine.module import PretrainModule
from ssvrl.engine.nonfinite import BufferSnapshot, NonFiniteGuard, NonFiniteTrainingError
from tests.test_objectives import _build, _moving_clips

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(does not have many workers|validation_step|overridden|lr_scheduler.step).*"
)
B, STEPS = 4, 5


class NaNAt(PretrainModule):
    """PretrainModule whose augmented views become NaN at the chosen steps (a broken batch):
    NaN runs through every batch norm of the backbone, heads and key encoder."""

    nan_steps: frozenset[int] = frozenset()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.global_step in self.nan_steps:
            batch["views"] = {k: v * float("nan") for k, v in batch["views"].items()}
        return batch


class Batches(Dataset):
    """``n`` uint8 multi-view batches, as the DataLoader's collate makes them."""

    def __init__(self, views: list[Any], n: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.items = [
            {
                "views": {v.name: _moving_clips(B, v.frames, g, size=32) for v in views},
                "seeds": {v.name: torch.arange(B) + 10 * i for v in views},
                "label": torch.zeros(B, dtype=torch.long),
                "index": torch.arange(B) + B * i,
            }
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class Recorder(pl.Callback):
    """Every parameter and buffer, and the optimizer's step counts, before each step and at
    the end (entry k = the state after step k-1)."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.opt_steps: list[list[float]] = []

    def _record(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        state = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}
        self.states.append(state)
        opt = trainer.optimizers[0]
        self.opt_steps.append([float(s["step"]) for s in opt.state.values()])

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:  # fmt: skip
        self._record(trainer, module)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._record(trainer, module)


def _fit(nan_steps: set[int], max_nonfinite: int = 5, steps: int = STEPS
         ) -> tuple[NaNAt, Recorder, pl.Trainer]:  # fmt: skip
    encoder, objective = _build("moco", width=4)  # BN everywhere, a queue, a key encoder
    module = NaNAt(encoder, objective, OptimConfig(warmup_epochs=0), B,
                   max_nonfinite_steps=max_nonfinite)  # fmt: skip
    module.nan_steps = frozenset(nan_steps)
    rec = Recorder()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[rec],
    )  # fmt: skip
    loader = DataLoader(Batches(list(objective.views()), steps), batch_size=None)
    trainer.fit(module, loader)
    return module, rec, trainer


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensors differ (bitwise; NaN != NaN)."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_nan_step_is_a_true_skip_and_training_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ssvrl"):
        module, rec, trainer = _fit({2})
    before, after = rec.states[2], rec.states[3]
    assert "objective.queue" in before and any(".running_var" in k for k in before)
    assert any(k.startswith("objective.key_encoder.net.") for k in before)
    assert _equal(before, after) == []  # parameters, BN stats, queue, key encoder: untouched
    assert rec.opt_steps[3] == rec.opt_steps[2] == [2.0] * len(rec.opt_steps[2])  # no Adam step
    changed = _equal(rec.states[3], rec.states[4])  # the next good step updates again
    assert "backbone.stem.0.weight" in changed or any(k.startswith("backbone.") for k in changed)
    assert "objective.queue" in changed and any(".running_mean" in k for k in changed)
    assert rec.opt_steps[4] == [3.0] * len(rec.opt_steps[4])
    assert trainer.global_step == STEPS  # the run went to the end
    assert all(torch.isfinite(v.float()).all() for v in rec.states[-1].values())
    assert module.guard.skipped == 1 and module.guard.consecutive == 0
    assert float(trainer.callback_metrics["train/skipped_steps"]) == 1.0
    assert sum("step 2: non-finite loss" in r.getMessage() for r in caplog.records) == 1
    checkpoint: dict[str, Any] = {}  # a resumed run counts on
    module.on_save_checkpoint(checkpoint)
    fresh = PretrainModule(*_build("moco", width=4), OptimConfig(), B)
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.guard.skipped == 1


def test_without_the_guard_the_same_batch_poisons_the_model() -> None:
    """The check above can fail: with the guard off, step 2's NaN reaches buffers and weights."""
    _, rec, _ = _fit({2}, max_nonfinite=0, steps=3)
    poisoned = [k for k, v in rec.states[3].items() if not torch.isfinite(v.float()).all()]
    assert any(".running_mean" in k for k in poisoned) and any(".weight" in k for k in poisoned)


def test_consecutive_nan_steps_stop_the_run_with_the_step_and_hints() -> None:
    with pytest.raises(NonFiniteTrainingError) as err:
        _fit({1, 2, 3, 4}, max_nonfinite=3)
    text = str(err.value)
    assert "stopped at step 3: 3 consecutive steps (steps 1-3)" in text
    assert "trainer.max_nonfinite_steps=3" in text
    for hint in ("optim.lr", "32-true", "ssvrl data check", "gradient_clip_val"):
        assert hint in text


class Pool(nn.Module):
    """(B, C, T, H, W) -> (B, 16): mean colour through a linear layer (fp16-friendly on CPU)."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3, 4)))


def test_grad_scaler_calibration_is_not_counted() -> None:
    """16-mixed with a real GradScaler (Lightning gives none on CPU, so one is passed in)
    starting far too high: its first ~13 steps overflow float16 and are the scaler's own skips;
    with max_nonfinite_steps=2 the run must neither stop nor count them, and then trains."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    _, cvrl = _build("cvrl", width=4)
    objective = type(cvrl)(cvrl.cfg, Pool.num_features)
    module = PretrainModule(Pool(), objective, OptimConfig(warmup_epochs=0), B,
                            max_nonfinite_steps=2)  # fmt: skip
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=16, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
    )  # fmt: skip
    before = module.backbone.fc.weight.detach().clone()
    trainer.fit(module, DataLoader(Batches(list(objective.views()), 16), batch_size=None))
    assert trainer.global_step == 16 and module.guard.skipped == 0
    assert 3 <= module.guard.scaler_skips < 16 and scaler.get_scale() < 2.0**24
    assert not torch.equal(before, module.backbone.fc.weight)  # trained once calibrated


# --------------------------------------------------------------------- the guard alone
def _params() -> list[nn.Parameter]:
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), float("inf"))
    return [p]


@pytest.mark.parametrize(
    "loss_bad,grad_bad,scale,verdict,counted",
    [(0, 0, None, "ok", 0), (1, 0, None, "skip", 1), (0, 1, None, "skip", 1),
     (0, 1, 65536.0, "scaler", 0),  # 16-mixed calibration: the scaler's own skip
     (0, 1, 0.5, "skip", 1),  # overflow with the scale already below 1: the model's
     (1, 1, 65536.0, "skip", 1)],  # a non-finite loss always counts
)  # fmt: skip
def test_verdicts_with_and_without_a_grad_scaler(
    loss_bad: int, grad_bad: int, scale: float | None, verdict: str, counted: int
) -> None:
    guard = NonFiniteGuard(5)
    params = _params()
    flags = torch.tensor([float(loss_bad), float(grad_bad)])
    got = guard.decide(flags, params, step=7, scale=(lambda: scale) if scale else None)
    assert got == verdict and guard.skipped == counted and guard.consecutive == counted
    assert (params[0].grad is None) == (verdict == "skip")  # only a guard skip drops grads


def test_scaler_steps_do_not_reset_or_reach_the_limit() -> None:
    guard = NonFiniteGuard(2)
    bad_loss, overflow = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    guard.decide(bad_loss, _params(), 0)
    for step in range(1, 20):  # calibration overflows: neither counted nor resetting
        assert guard.decide(overflow, _params(), step, lambda: 1024.0) == "scaler"
    with pytest.raises(NonFiniteTrainingError, match="stopped at step 20"):
        guard.decide(bad_loss, _params(), 20)


def test_snapshot_restores_values_and_reassigned_buffers_and_names_new_ones() -> None:
    m = nn.BatchNorm1d(3)
    snap = BufferSnapshot(m)
    snap.take()
    m(torch.randn(4, 3) * float("nan"))
    old = m.running_var
    m.running_var = torch.full((3,), 7.0)  # replaced, not updated in place
    m.register_buffer("extra", torch.zeros(2))  # made after the snapshot
    assert snap.restore() == ["extra"]
    assert m.running_var is old and torch.equal(m.running_var, torch.ones(3))
    assert torch.equal(m.running_mean, torch.zeros(3)) and int(m.num_batches_tracked) == 0
