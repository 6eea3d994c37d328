"""``ssvrl views``: a picture of what the objective's views look like after augmentation.

One row per sampled video, one column per view; each cell shows a few frames of that view,
spread over its clip, exactly as the training step receives them (same sampler, same decode,
same per-clip seeds, same device-side augmentation), de-normalised for display. A user debugging
an augmentation recipe looks at this first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ssvrl.augment import VideoAugment
from ssvrl.config.schema import ExperimentConfig
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.dataset import PretrainDataset
from ssvrl.data.index import VideoRecord
from ssvrl.engine.build import build_encoder, build_objective, build_video_index, decode_config

PAD, LABEL = 4, 14  # px between cells; height of the label strip above each cell


def _display(view: torch.Tensor, aug: VideoAugment, frames: int) -> np.ndarray:
    """float (C, T, S, S) as trained on -> uint8 (S, frames * S, 3), frames side by side."""
    cfg = aug.cfg
    x = view
    if cfg.normalize:
        std, mean = torch.tensor(cfg.std), torch.tensor(cfg.mean)
        x = x * std[:, None, None, None] + mean[:, None, None, None]  # back to [0, 1]
    picks = np.linspace(0, x.shape[1] - 1, min(frames, x.shape[1])).round().astype(int)
    strip = torch.cat([x[:, t] for t in picks], dim=2)  # (C, S, frames * S)
    return (strip.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def render_views(cfg: ExperimentConfig, out: Path, videos: int = 4, frames: int = 4,
                 epoch: int = 0) -> Path:
    """Write the grid of ``videos`` training samples x the objective's views to ``out`` (PNG)."""
    objective = build_objective(cfg, build_encoder(cfg).num_features)
    specs = objective.views()
    index = build_video_index(cfg.data, "train")
    bad = BadVideoLog(None, len(index), cfg.data.max_bad_fraction)
    ds = PretrainDataset(index, objective.clip_sampler(), decode_config(cfg.data), bad, cfg.seed)
    augs = {v.name: VideoAugment(v.augment) for v in specs}
    rows = []
    for i in np.linspace(0, len(ds) - 1, min(videos, len(ds))).round().astype(int):
        sample = ds[(epoch, int(i))]
        cells = []
        for v in specs:
            clip = sample["views"][v.name][None]  # uint8 (1, C, T, S, S)
            seed = torch.tensor([sample["seeds"][v.name]])
            cells.append(_display(augs[v.name](clip, seed)[0], augs[v.name], frames))
        rows.append((index.records[sample["index"]], cells))
    return _save_grid(rows, [v.name for v in specs], index.classes, out)


def _save_grid(
    rows: list[tuple[VideoRecord, list[np.ndarray]]], names: list[str],
    classes: tuple[str, ...], out: Path,
) -> Path:
    """Paste the cells into one image with a label strip (view name, class, file) per cell."""
    widths = [max(cells[j].shape[1] for _, cells in rows) for j in range(len(names))]
    heights = [max(c.shape[0] for c in cells) for _, cells in rows]
    W = sum(widths) + PAD * (len(widths) + 1)
    H = sum(h + LABEL for h in heights) + PAD * (len(rows) + 1)
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = PAD
    for (rec, cells), h in zip(rows, heights, strict=True):
        x = PAD
        for j, cell in enumerate(cells):
            cls = classes[rec.label] if 0 <= rec.label < len(classes) else "?"
            text = f"{names[j]} | {cls} | {rec.path.name}"[: widths[j] // 6]  # ~6 px a character
            draw.text((x, y), text, fill=(0, 0, 0))
            canvas.paste(Image.fromarray(cell), (x, y + LABEL))
            x += widths[j] + PAD
        y += h + LABEL + PAD
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
