"""``ssvrl views``: a picture of what the objective's views look like after augmentation.

One row per sampled video, one column per view; each cell shows a few frames of that view,
spread over its clip, exactly as the training step receives them (same sampler, same decode,
same per-clip seeds, same device-side :class:`~ssvrl.augment.MultiViewAugment` on the batch of
rows), de-normalised for display. Views that use motion get an extra column each for their
companion: the motion map (``<view>/motion``, scaled to its clip's maximum) or the FAME mask
(``<view>/fame_mask``, white = foreground kept). ``gif`` writes the same grid animated over
every frame. A user debugging an augmentation recipe looks at this first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import default_collate

from ssvrl.augment import AugmentConfig, MultiViewAugment
from ssvrl.config.schema import ExperimentConfig
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.dataset import PretrainDataset
from ssvrl.engine.build import build_encoder, build_objective, build_video_index, decode_config

PAD, LABEL = 4, 14  # px between cells; height of the label strip above each cell
Column = tuple[str, torch.Tensor]  # (title, float (B, C, T, S, S) in [0, 1])


def to_display(x: torch.Tensor, cfg: AugmentConfig | None) -> torch.Tensor:
    """Views as trained on -> [0, 1]: undo the recipe's normalisation (None: a motion map or
    mask, scaled to each clip's maximum and repeated to 3 channels)."""
    if cfg is None:
        peak = x.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1, 1)
        return (x.float() / peak).expand(-1, 3, -1, -1, -1)  # (B, 3, T, S, S)
    if not cfg.normalize:
        return x
    shape = (1, 3, 1, 1, 1)
    return x * torch.tensor(cfg.std).view(shape) + torch.tensor(cfg.mean).view(shape)


def _picks(length: int, frames: int) -> list[int]:
    """``frames`` time indices spread over a clip of ``length`` frames."""
    return np.linspace(0, length - 1, min(frames, length)).round().astype(int).tolist()


def _strip(x: torch.Tensor, picks: Sequence[int]) -> np.ndarray:
    """float (C, T, S, S) in [0, 1] -> uint8 (S, len(picks) * S, 3), frames side by side."""
    strip = torch.cat([x[:, t] for t in picks], dim=2)  # (C, S, frames * S)
    return (strip.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def grid(cells: list[list[np.ndarray]], titles: list[list[str]]) -> Image.Image:
    """Paste ``cells[row][col]`` (uint8 HxWx3) into one image, a label strip above each."""
    n_cols = len(cells[0])
    widths = [max(row[j].shape[1] for row in cells) for j in range(n_cols)]
    heights = [max(c.shape[0] for c in row) for row in cells]
    W = sum(widths) + PAD * (n_cols + 1)
    H = sum(h + LABEL for h in heights) + PAD * (len(cells) + 1)
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = PAD
    for row, row_titles, h in zip(cells, titles, heights, strict=True):
        x = PAD
        for j, cell in enumerate(row):
            draw.text((x, y), row_titles[j][: widths[j] // 6], fill=(0, 0, 0))  # ~6 px a char
            canvas.paste(Image.fromarray(cell), (x, y + LABEL))
            x += widths[j] + PAD
        y += h + LABEL + PAD
    return canvas


def sample_columns(
    cfg: ExperimentConfig, videos: int, epoch: int = 0
) -> tuple[list[Column], list[str]]:
    """Decode ``videos`` training samples, augment them as one batch; the display columns
    (views, then their motion companions) and one caption per row (class | file)."""
    objective = build_objective(cfg, build_encoder(cfg).num_features)
    specs = objective.views()
    index = build_video_index(cfg.data, "train")
    bad = BadVideoLog(None, len(index), cfg.data.max_bad_fraction)
    decode = replace(decode_config(cfg.data), repeats=1)  # one sample per row of the picture
    ds = PretrainDataset(index, objective.clip_sampler(), decode, bad, cfg.seed)
    samples = []
    for i in np.linspace(0, len(ds) - 1, min(videos, len(ds))).round().astype(int):
        item = ds[(epoch, int(i))]
        samples.append(item[0] if isinstance(item, list) else item)
    batch = default_collate(samples)
    out = MultiViewAugment(specs).run(batch["views"], batch["seeds"])
    recipes = {v.name: v.augment for v in specs}
    columns = [(k, to_display(v, recipes[k])) for k, v in out.views.items()]
    columns += [(k, to_display(v, None)) for k, v in out.aux.items()]
    captions = []
    for s in samples:
        rec = index.records[s["index"]]
        cls = index.classes[rec.label] if 0 <= rec.label < len(index.classes) else "?"
        captions.append(f"{cls} | {rec.path.name}")
    return columns, captions


def render_views(
    cfg: ExperimentConfig,
    out: Path,
    videos: int = 4,
    frames: int = 4,
    epoch: int = 0,
    gif: Path | None = None,
) -> Path:
    """Write the grid of ``videos`` training samples x the views to ``out`` (PNG), and the
    same grid animated over every frame to ``gif`` when given."""
    columns, captions = sample_columns(cfg, videos, epoch)
    titles = [[f"{name} | {cap}" for name, _ in columns] for cap in captions]
    cells = [
        [_strip(x[b], _picks(x.shape[2], frames)) for _, x in columns] for b in range(len(captions))
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(cells, titles).save(out)
    if gif is not None:
        write_gif(columns, titles, gif)
    return out


def write_gif(columns: list[Column], titles: list[list[str]], path: Path, ms: int = 250) -> Path:
    """One grid per time step (one frame per cell; shorter views are stretched in time)."""
    n = max(x.shape[2] for _, x in columns)
    images = []
    for k in range(n):
        cells = [
            [_strip(x[b], [round(k * (x.shape[2] - 1) / max(n - 1, 1))]) for _, x in columns]
            for b in range(len(titles))
        ]
        images.append(grid(cells, titles))
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0)
    return path
