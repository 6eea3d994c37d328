"""The generic collapse watch (issue #8): ``train/embed_std`` is ~1 for spread embeddings and 0
for identical ones; a constant-output encoder gets exactly one warning per epoch, naming the
objective; a healthy encoder gets none."""

from __future__ import annotations

import logging

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssvrl.config.schema import OptimConfig
from ssvrl.engine.collapse import CollapseWatch, embedding_spread
from ssvrl.engine.module import PretrainModule
from tests.test_nonfinite import B, Batches
from tests.test_objectives import _build

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(does not have many workers|validation_step|overridden).*"
)


def test_spread_is_one_when_uniform_and_zero_when_collapsed() -> None:
    g = torch.Generator().manual_seed(0)
    spread = embedding_spread(torch.randn(512, 64, generator=g))  # isotropic: uniform on sphere
    assert spread.item() == pytest.approx(1.0, abs=0.03)
    same = torch.randn(1, 64, generator=g).expand(16, 64)
    assert embedding_spread(same).item() == pytest.approx(0.0, abs=1e-6)
    scaled = torch.randn(16, 8, generator=g) * 1000  # invariant to scale (l2-normalised)
    assert embedding_spread(scaled).item() == pytest.approx(embedding_spread(scaled / 1000).item())


class Constant(nn.Module):
    """An encoder that maps every clip to the same embedding (a collapsed backbone)."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(self.num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding.expand(x.shape[0], -1) + 0 * x.mean()  # (B, D), graph kept


def _fit(encoder: nn.Module | None, epochs: int = 2, steps: int = 2) -> PretrainModule:
    small, objective = _build("cvrl", width=4)
    if encoder is not None:
        objective = type(objective)(objective.cfg, encoder.num_features)  # type: ignore[arg-type]
    module = PretrainModule(encoder or small, objective, OptimConfig(), B, collapse_warn_std=0.05)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, DataLoader(Batches(list(objective.views()), steps), batch_size=None))
    module.last_embed_std = float(trainer.callback_metrics["train/embed_std"])  # type: ignore
    return module


def _collapse_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "may have collapsed" in r.getMessage()]


def test_constant_encoder_warns_once_per_epoch(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ssvrl"):
        module = _fit(Constant(), epochs=2, steps=3)
    warnings = _collapse_warnings(caplog)
    assert len(warnings) == 2 and module.collapse.warnings == 2  # 2 epochs x 3 steps: 2, not 6
    assert "in epoch 0" in warnings[0] and "in epoch 1" in warnings[1]
    assert "objective 'cvrl'" in warnings[0] and "larger batch" in warnings[0]
    assert module.last_embed_std == pytest.approx(0.0, abs=1e-6)  # type: ignore[attr-defined]


def test_healthy_encoder_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ssvrl"):
        module = _fit(None, epochs=1, steps=2)
    assert _collapse_warnings(caplog) == [] and module.collapse.warnings == 0
    assert module.last_embed_std > 0.05  # type: ignore[attr-defined]


def test_one_healthy_step_in_the_epoch_is_enough_and_nan_is_ignored() -> None:
    watch = CollapseWatch("moco", warn_below=0.05)
    same = torch.ones(4, 8)
    watch.observe(same)
    watch.observe(torch.full((4, 8), float("nan")))  # a skipped non-finite step
    assert watch.end_epoch(0) == pytest.approx(0.0) and watch.warnings == 1
    watch.observe(same)
    watch.observe(torch.randn(4, 8))
    assert watch.end_epoch(1) > 0.05 and watch.warnings == 1  # not the WHOLE epoch: no warning
    assert watch.observe(None) is None and watch.end_epoch(2) is None
    watch.observe(same)
    watch.resume(0.7)  # the epoch's maximum before a resume, from the checkpoint
    assert watch.epoch_max() == pytest.approx(0.7)
    watch.observe(same)
    assert watch.end_epoch(3) == pytest.approx(0.7) and watch.warnings == 1
    with pytest.raises(ValueError, match="trainer.collapse_warn_std"):
        CollapseWatch("moco", warn_below=1.5)
