"""``trainer.channels_last``: backbone weights and augmented views in channels-last-3d layout
(NDHWC), the same training otherwise.

cuDNN's 3D convolutions run faster on NDHWC tensors (R3D-18 bf16 step 1.6x on an H200,
benchmarks/RESULTS.md); on the CPU this checks the layout and that the results do not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ssvrl.cli import load_experiment
from ssvrl.config.schema import OptimConfig
from ssvrl.engine.module import PretrainModule, to_channels_last
from tests.test_nonfinite import Batches
from tests.test_objectives import _build

CL = torch.channels_last_3d
ROOT = Path(__file__).resolve().parents[1]


class ViewLayouts(pl.Callback):
    """Whether every 5-D view of each step was NDHWC, as the training step saw it."""

    def __init__(self) -> None:
        self.layouts: list[bool] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        views = [v for v in batch["views"].values() if v.dim() == 5]
        self.layouts.append(bool(views) and all(v.is_contiguous(memory_format=CL) for v in views))


def fit(channels_last: bool, steps: int = 3) -> tuple[PretrainModule, ViewLayouts]:
    encoder, objective = _build("cvrl", width=8)  # seeded: both runs start from equal weights
    # SGD: updates proportional to the gradients. (Adam's first step is about lr x sign(g),
    # so gradients at rounding level, e.g. of dead ReLU units, would differ by 2 lr.)
    optim = OptimConfig(name="sgd", lr=0.005, warmup_epochs=0, schedule="constant")
    module = PretrainModule(encoder, objective, optim, 4, channels_last=channels_last)
    spy = ViewLayouts()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[spy],
    )  # fmt: skip
    trainer.fit(module, DataLoader(Batches(list(objective.views()), steps), batch_size=None))
    return module, spy


def conv_weights(module: PretrainModule) -> list[torch.Tensor]:
    return [p for p in module.backbone.parameters() if p.dim() == 5]


def test_layout_of_weights_and_views_and_the_same_training() -> None:
    plain, plain_spy = fit(channels_last=False)
    last, last_spy = fit(channels_last=True)
    assert last_spy.layouts == [True] * 3 and plain_spy.layouts == [False] * 3
    weights = conv_weights(last)
    assert weights and all(w.is_contiguous(memory_format=CL) for w in weights)
    # a 3x3x3 kernel over several channels is not NDHWC by accident
    assert not any(w.is_contiguous(memory_format=CL) for w in conv_weights(plain))
    # The same training: other kernels, other float rounding, nothing more. 3 SGD steps move
    # weights by ~0.35 (large early gradients); rounding differences grow with them (measured
    # 8e-5 at most). A wrong layout (channels taken for time, say) differs by the movement.
    start, _ = _build("cvrl", width=8)
    moved = max((a - b).abs().max().item()
                for a, b in zip(start.parameters(), last.backbone.parameters(), strict=True))
    diff = max((a - b).abs().max().item()
               for a, b in zip(plain.parameters(), last.parameters(), strict=True))
    assert moved > 1e-2 and diff < 1e-3 * moved, (diff, moved)


def test_to_channels_last_keeps_values_and_leaves_other_tensors() -> None:
    x = torch.randn(2, 3, 4, 5, 6)  # (B, C, T, H, W)
    y = to_channels_last(x)
    assert y.is_contiguous(memory_format=CL) and torch.equal(x, y)
    flat = torch.randn(2, 3)
    assert to_channels_last(flat) is flat


@pytest.mark.parametrize("value", [True, False])
def test_yaml_key(value: bool) -> None:
    cfg = load_experiment(
        str(ROOT / "experiments" / "cvrl" / "quickstart.yaml"),
        [f"trainer.channels_last={str(value).lower()}"],
    )
    assert cfg.trainer.channels_last is value
