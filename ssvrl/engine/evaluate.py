"""The linear-probe run built from an experiment config (``ssvrl probe``)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ssvrl.augment import VideoAugment
from ssvrl.backbones import load_weights
from ssvrl.config.loader import config_hash
from ssvrl.config.schema import ExperimentConfig
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.dataset import EvalClipDataset
from ssvrl.data.sampling import TemporalView
from ssvrl.engine.build import build_encoder, build_objective, build_video_index, decode_config
from ssvrl.eval.features import FeatureSet, extract_features
from ssvrl.eval.linear_probe import fit_linear_probe, topk_accuracy

log = logging.getLogger("ssvrl")


def resolve_checkpoint(cfg: ExperimentConfig, spec: str) -> Path | None:
    """``"random"`` -> None; ``"last"`` -> the newest run's ``last.ckpt``; else a path."""
    if spec == "random":
        return None
    if spec == "last":
        runs = sorted(
            (Path(cfg.out_dir) / cfg.name).glob("version_*/checkpoints/last.ckpt"),
            key=lambda p: int(p.parts[-3].split("_")[1]),
        )
        if not runs:
            raise FileNotFoundError(
                f"no checkpoint under {Path(cfg.out_dir) / cfg.name}/version_*/checkpoints/: run "
                f"`ssvrl fit` first or pass probe.checkpoint=PATH or probe.checkpoint=random"
            )
        return runs[-1]
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"probe.checkpoint: no such file {path}")
    return path


def _features(
    cfg: ExperimentConfig,
    backbone: torch.nn.Module,
    subset: str,
    clips: int,
    view: TemporalView,
    aug: VideoAugment,
    device: torch.device,
    bad_dir: Path,
) -> tuple[FeatureSet, int]:
    index = build_video_index(cfg.data, subset)
    bad = BadVideoLog(bad_dir, len(index), cfg.data.max_bad_fraction)
    ds = EvalClipDataset(index, view, clips, decode_config(cfg.data), bad)
    loader = DataLoader(ds, batch_size=cfg.probe.batch_size, num_workers=cfg.data.num_workers)
    fs = extract_features(backbone, loader, aug.eval_transform, device)
    return fs, len(index.classes)


def run_probe(
    cfg: ExperimentConfig, checkpoint: str, out_dir: Path | None = None
) -> dict[str, Any]:
    """Fit a linear probe on frozen features of ``checkpoint`` and write ``probe.json``."""
    ckpt = resolve_checkpoint(cfg, checkpoint)
    pl.seed_everything(cfg.seed, verbose=False)  # a "random" init is the seed's init
    backbone = build_encoder(cfg)
    if ckpt is not None:
        load_weights(backbone, ckpt)
    view0 = build_objective(cfg, backbone.num_features).views()[0]
    p = cfg.probe
    view = TemporalView("probe", p.frames or view0.frames, p.stride or view0.stride)
    aug = VideoAugment(replace(view0.augment, crop_size=p.crop_size or view0.augment.crop_size))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone.to(device)
    out = out_dir or (ckpt.parent.parent if ckpt else Path(cfg.out_dir) / cfg.name / "probe_random")
    out.mkdir(parents=True, exist_ok=True)
    train, num_classes = _features(
        cfg, backbone, "train", p.train_clips, view, aug, device, out / "bad_videos"
    )
    test, _ = _features(cfg, backbone, "test", p.test_clips, view, aug, device, out / "bad_videos")
    K, D = train.feats.shape[1:]
    x = train.feats[train.valid].reshape(-1, D)  # (N_train * K, D): every clip an example
    y = train.labels[train.valid].repeat_interleave(K)
    probe = fit_linear_probe(x, y, num_classes, steps=p.epochs, weight_decay=p.weight_decay)
    with torch.no_grad():
        logits = probe(test.feats[test.valid].mean(dim=1))  # clip features averaged per video
    result = {
        **topk_accuracy(logits, test.labels[test.valid]),
        "checkpoint": str(ckpt) if ckpt else "random",
        "protocol": {
            "classifier": "linear, L-BFGS, standardised features",
            "train_clips_per_video": p.train_clips,
            "test_clips_per_video": p.test_clips,
            "frames": view.frames,
            "stride": view.stride,
            "crop": aug.cfg.crop_size,
            "split": cfg.data.split,
            "format": cfg.data.format,
        },
        "num_train_videos": int(train.valid.sum()),
        "num_test_videos": int(test.valid.sum()),
        "unreadable_videos": int((~train.valid).sum() + (~test.valid).sum()),
        "config_hash": config_hash(cfg),
    }
    (out / "probe.json").write_text(json.dumps(result, indent=2))
    log.info("probe results written to %s", out / "probe.json")
    return result


def format_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A small Markdown table of probe results: encoder, top-1, top-5, videos."""
    lines = ["| encoder | top-1 | top-5 | train / test videos |", "|---|---|---|---|"]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['top1']:.1f} | {r['top5']:.1f} | "
            f"{r['num_train_videos']} / {r['num_test_videos']} |"
        )
    return "\n".join(lines)
