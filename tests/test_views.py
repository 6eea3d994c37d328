"""``ssvrl views``: the grid (and GIF) of augmented views, motion maps and FAME masks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ssvrl.augment import AugmentConfig, MotionUse
from ssvrl.cli import main
from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset
from ssvrl.engine import views as views_mod
from ssvrl.engine.views import LABEL, PAD, grid, to_display
from ssvrl.objectives import ViewSpec

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "cvrl" / "quickstart.yaml")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("views_synth")
    write_synthetic_dataset(
        out, SynthSpec(num_classes=3, groups=2, clips_per_group=1, frames=32, seed=4), workers=1
    )
    return [f"data.root={out / 'videos'}", f"data.annotations={out / 'annotations'}"]


def test_grid_layout_size() -> None:
    cells = [[np.zeros((8, 16, 3), np.uint8), np.zeros((4, 12, 3), np.uint8)]] * 3
    img = grid(cells, [["a", "b"]] * 3)
    assert img.size == (16 + 12 + 3 * PAD, 3 * (8 + LABEL) + 4 * PAD)


def test_display_undoes_normalisation_and_scales_maps() -> None:
    cfg = AugmentConfig()
    x = torch.rand(2, 3, 2, 4, 4)
    normed = (x - torch.tensor(cfg.mean).view(1, 3, 1, 1, 1)) / torch.tensor(cfg.std).view(
        1, 3, 1, 1, 1
    )
    torch.testing.assert_close(to_display(normed, cfg), x)
    motion = torch.rand(2, 1, 2, 4, 4) * 0.1
    shown = to_display(motion, None)
    assert shown.shape == (2, 3, 2, 4, 4)
    assert torch.allclose(shown.flatten(1).amax(1), torch.ones(2))


def test_views_png_and_gif_with_fame_and_motion(
    tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CVRL whose second view uses FAME and first a motion map: 2 extra columns."""
    real = views_mod.build_objective

    def with_motion(cfg: Any, dim: int) -> Any:
        objective = real(cfg, dim)
        v1, v2 = objective.views()
        specs = (
            dataclasses.replace(v1, motion=MotionUse("frame_diff")),
            dataclasses.replace(v2, motion=MotionUse("fame")),
        )
        objective.views = lambda: specs  # type: ignore[method-assign]
        return objective

    monkeypatch.setattr(views_mod, "build_objective", with_motion)
    out, gif = tmp_path / "views.png", tmp_path / "views.gif"
    argv = ["views", CONFIG, *tiny, "--out", str(out), "--videos", "3", "--frames", "2"]
    assert main([*argv, "--gif", str(gif)]) == 0
    Image.open(out).verify()
    crop = 56  # quickstart crop size; 8 frames per view
    motion_col, mask_col = 2 * crop, crop  # motion map: 2 frames shown; FAME mask: 1 (static)
    width = 2 * 2 * crop + motion_col + mask_col + 5 * PAD
    assert Image.open(out).size == (width, 3 * (crop + LABEL) + 4 * PAD)
    anim = Image.open(gif)
    assert anim.n_frames == 8 and anim.size == (4 * crop + 5 * PAD, 3 * (crop + LABEL) + 4 * PAD)
    pixels = np.asarray(Image.open(out).convert("RGB"))
    for row in range(3):  # last column: FAME masks, black and white, about half white
        top = PAD + row * (crop + LABEL + PAD) + LABEL
        cell = pixels[top : top + crop, -(PAD + crop) : -PAD]
        assert ((cell == 0) | (cell == 255)).all()
        assert 0.3 < (cell == 255).mean() < 0.7


def test_plain_views_png_matches_the_objective(tiny: list[str], tmp_path: Path) -> None:
    out = tmp_path / "plain.png"
    assert main(["views", CONFIG, *tiny, "--out", str(out), "--videos", "2", "--frames", "3"]) == 0
    crop = 56
    assert Image.open(out).size == (2 * 3 * crop + 3 * PAD, 2 * (crop + LABEL) + 3 * PAD)


def test_view_spec_default_has_no_companion() -> None:
    assert ViewSpec("a", 4, 1).motion.kind == "none"
