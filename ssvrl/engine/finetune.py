"""The fine-tuning run built from an experiment config (``ssvrl finetune``).

Protocol (CVRL Sec. 4.3, the UCF101 / HMDB51 "fine-tune" rows of video SSL tables): the
encoder starts from a pretraining checkpoint (or the seed's random init, the baseline), gets
dropout and a new linear classifier, and is trained end to end on the training split, one
random clip per video and epoch, augmented on the device. Each test video is then scored by
``finetune.test_clips`` clips spread evenly over it (centre crop), softmax scores averaged
(:mod:`ssvrl.eval.video_scores`). Unreadable videos are skipped and counted, as in training.

Outputs go to ``<run>/finetune_<checkpoint stem>/`` (``<out_dir>/<name>/finetune_random/``
for the random init, or ``--out``): ``finetune.json``, ``config.yaml``, the Lightning logs
under ``logs/version_N/``, the fine-tuned ``checkpoints/last.ckpt`` and ``bad_videos.json``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader

from ssvrl.augment import AugmentConfig
from ssvrl.backbones import load_weights
from ssvrl.config.loader import ConfigError, config_hash, save_config
from ssvrl.config.schema import ExperimentConfig
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.datamodule import PretrainDataModule
from ssvrl.data.dataset import PretrainDataset
from ssvrl.data.eval_dataset import EvalClipDataset
from ssvrl.data.sampling import RandomClipSampler, TemporalView
from ssvrl.engine.build import (
    DataError,
    build_encoder,
    build_objective,
    build_video_index,
    decode_config,
)
from ssvrl.engine.callbacks import BadVideoSummary
from ssvrl.engine.evaluate import resolve_checkpoint
from ssvrl.engine.finetune_module import VIEW, FinetuneModule
from ssvrl.eval.linear_probe import topk_accuracy
from ssvrl.eval.video_scores import clip_accuracy, score_videos

log = logging.getLogger("ssvrl")


def finetune_dir(cfg: ExperimentConfig, ckpt: Path | None) -> Path:
    """``<run>/finetune_<stem>`` for a run's checkpoint, ``<out_dir>/<name>/finetune_random``."""
    if ckpt is None:
        return Path(cfg.out_dir) / cfg.name / "finetune_random"
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / f"finetune_{ckpt.stem}"


def build_finetune_module(
    cfg: ExperimentConfig, ckpt: Path | None, num_classes: int
) -> tuple[FinetuneModule, TemporalView]:
    """The module (encoder loaded from ``ckpt``, or random) and the clips' temporal view.

    Frames, stride and crop default to the objective's first view, as the probe's do; the
    training recipe is ``finetune``'s (random resized crop, flip, colour jitter; no grayscale,
    blur or solarisation), with the pretraining view's normalisation statistics.
    """
    backbone = build_encoder(cfg)
    if ckpt is not None:
        try:
            load_weights(backbone, ckpt)
        except ValueError as err:  # the config's backbone is not the checkpoint's
            saved = finetune_dir(cfg, ckpt).parent / "config.yaml"
            hint = f"; the run's backbone settings are in {saved}" if saved.is_file() else ""
            raise ConfigError(f"{err}{hint}", key="finetune.checkpoint") from err
    view0 = build_objective(cfg, backbone.num_features).views()[0]
    f = cfg.finetune
    fps = view0.fps if f.stride is None else None
    view = TemporalView(VIEW, f.frames or view0.frames, f.stride or view0.stride, fps)
    brightness, contrast, saturation, hue = f.jitter
    augment = AugmentConfig(
        crop_size=f.crop_size or view0.augment.crop_size,
        scale=f.scale,
        ratio=view0.augment.ratio,
        flip_p=f.flip_p,
        jitter_p=f.jitter_p,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        grayscale_p=0.0,
        blur_p=0.0,
        solarize_p=0.0,
        normalize=view0.augment.normalize,
        mean=view0.augment.mean,
        std=view0.augment.std,
    )
    module = FinetuneModule(backbone, backbone.num_features, num_classes, augment, f)
    return module, view


def _trainer(cfg: ExperimentConfig, out: Path, bad: BadVideoLog) -> pl.Trainer:
    t = cfg.trainer
    hooks = "(on_after_batch_transfer|transfer_batch_to_device)"  # the module owns transfer
    warnings.filterwarnings("ignore", message=f"You have overridden `{hooks}`")
    warnings.filterwarnings("ignore", message="You passed in a `val_dataloader` but have no")
    # TensorBoard makes the version folder first, which the CSV logger mistakes for old logs.
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not")
    taken = [int(p.name[8:]) for p in (out / "logs").glob("version_*") if p.name[8:].isdigit()]
    version = f"version_{max(taken, default=-1) + 1}"
    loggers = [
        TensorBoardLogger(out, name="logs", version=version, default_hp_metric=False),
        CSVLogger(out, name="logs", version=version),
    ]
    last = ModelCheckpoint(
        dirpath=out / "checkpoints", save_last=True, save_top_k=0, enable_version_counter=False
    )
    return pl.Trainer(
        default_root_dir=out,
        max_epochs=cfg.finetune.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        gradient_clip_val=t.gradient_clip_val or None,
        log_every_n_steps=t.log_every_n_steps,
        logger=loggers,
        callbacks=[last, LearningRateMonitor("step"), BadVideoSummary(bad, out)],
        use_distributed_sampler=False,  # the EpochSampler shards
        enable_progress_bar=t.progress_bar,
        deterministic=t.deterministic,
        num_sanity_val_steps=0,
        limit_val_batches=0,  # testing is multi-clip, after fitting
    )


def _autocast_dtype(precision: str) -> torch.dtype | None:
    """The test loop's autocast dtype for the trainer's precision ("32-true": none)."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return None


def run_finetune(
    cfg: ExperimentConfig, checkpoint: str, out_dir: Path | None = None
) -> dict[str, Any]:
    """Fine-tune from ``checkpoint`` ("last", "random" or a path), test, write finetune.json.

    Returns the result (also written), or ``{}`` on processes other than global rank 0.
    """
    t0 = time.perf_counter()
    ckpt = resolve_checkpoint(cfg, checkpoint)
    out = out_dir or finetune_dir(cfg, ckpt)
    train_index = build_video_index(cfg.data, "train")
    test_index = build_video_index(cfg.data, "test")
    _check_batch_size(cfg, len(train_index))
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # "random" is the seed's init
    module, view = build_finetune_module(cfg, ckpt, len(train_index.classes))
    decode = replace(decode_config(cfg.data), repeats=1)
    bad = BadVideoLog(out / "bad_videos", len(train_index), cfg.data.max_bad_fraction)
    train = PretrainDataset(train_index, RandomClipSampler((view,)), decode, bad, cfg.seed)
    f = cfg.finetune
    trainer = _trainer(cfg, out, bad)
    datamodule = PretrainDataModule(train, f.batch_size, cfg.data.num_workers, cfg.seed)
    trainer.fit(module, datamodule=datamodule)  # one random clip per video and epoch
    t_fit = time.perf_counter() - t0
    if not trainer.is_global_zero:
        return {}
    device = trainer.strategy.root_device
    module.to(device)
    bad = BadVideoLog(out / "bad_videos", len(test_index), cfg.data.max_bad_fraction)
    test = EvalClipDataset(test_index, view, f.test_clips, decode, bad)
    loader = DataLoader(test, batch_size=f.test_batch_size, num_workers=cfg.data.num_workers)
    autocast = _autocast_dtype(cfg.trainer.precision)
    scores = score_videos(module, loader, module.augment.eval_transform, device, autocast)
    valid = scores.valid
    if not valid.any():
        raise DataError(f"no readable test video; see {out / 'bad_videos'}")
    bad_paths = {d["path"] for d in bad.summary()}  # train and test share the folder
    train_bad = sum(str(r.path) in bad_paths for r in train_index.records)
    result = {
        **topk_accuracy(scores.scores[valid], scores.labels[valid]),
        "clip_top1": clip_accuracy(scores),
        "checkpoint": str(ckpt) if ckpt else "random",
        "protocol": _protocol(cfg, view, module.augment.cfg),
        "num_train_videos": len(train_index) - train_bad,
        "num_test_videos": int(valid.sum()),
        "unreadable_videos": train_bad + int((~valid).sum()),
        "config_hash": config_hash(cfg),
        "seconds": {  # fit: indexes, model and training; test: multi-clip scoring
            "fit": round(t_fit, 1),
            "test": round(time.perf_counter() - t0 - t_fit, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "out_dir": str(out),
    }
    _write(out, result, bad, len(train_index) + len(test_index))
    return result


def _check_batch_size(cfg: ExperimentConfig, num_train: int) -> None:
    per_process = num_train // (cfg.trainer.devices * cfg.trainer.num_nodes)
    if per_process < cfg.finetune.batch_size:
        raise ConfigError(
            f"finetune.batch_size={cfg.finetune.batch_size} exceeds the {per_process} "
            "training videos per process",
            key="finetune.batch_size",
        )


def _write(out: Path, result: dict[str, Any], bad: BadVideoLog, total: int) -> None:
    """finetune.json, and bad_videos.json with the test split's unreadable videos too."""
    (out / "finetune.json").write_text(json.dumps(result, indent=2))
    summary = {"count": bad.count(), "total": total, "videos": bad.summary()}
    (out / "bad_videos.json").write_text(json.dumps(summary, indent=2))
    log.info("fine-tuning results written to %s", out / "finetune.json")


def _protocol(cfg: ExperimentConfig, view: TemporalView, augment: AugmentConfig) -> dict[str, Any]:
    f = cfg.finetune
    return {
        "evaluation": "fine-tune: whole encoder + dropout + linear classifier, end to end",
        "epochs": f.epochs,
        "batch_size": f.batch_size,
        "optimizer": f.optimizer,
        "lr": f.lr,
        "backbone_lr_mult": f.backbone_lr_mult,
        "weight_decay": f.weight_decay,
        "warmup_epochs": f.warmup_epochs,
        "schedule": "linear warm-up, cosine decay to 0, per step",
        "label_smoothing": f.label_smoothing,
        "dropout": f.dropout,
        "train_clips_per_video_per_epoch": 1,
        "train_augment": asdict(augment),
        "test_clips_per_video": f.test_clips,
        "test_crop": "centre square, resized to crop",
        "score_averaging": "softmax, mean over clips",
        "frames": view.frames,
        "stride": view.stride,
        "fps": view.fps,
        "crop": augment.crop_size,
        "split": cfg.data.split,
        "format": cfg.data.format,
        "precision": cfg.trainer.precision,
        "seed": cfg.seed,
    }


def format_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A small Markdown table of fine-tuning results: init, top-1, top-5, clip top-1, videos."""
    lines = [
        "| init | top-1 | top-5 | 1-clip top-1 | train / test videos | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['top1']:.1f} | {r['top5']:.1f} | {r['clip_top1']:.1f} | "
            f"{r['num_train_videos']} / {r['num_test_videos']} | "
            f"{r['seconds']['total'] / 60:.1f} |"
        )
    return "\n".join(lines)
