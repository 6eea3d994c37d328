"""The probe run built from an experiment config (``ssvrl probe``): linear, kNN, retrieval.

One feature extraction serves every evaluator (:mod:`ssvrl.eval.protocol`): training videos
at ``probe.train_clips`` centre clips, test videos at ``probe.test_clips`` x
``probe.test_crops`` views (SlowFast's 10 x 3 test). ``probe.mode: online`` instead trains the
linear head by SGD over augmented clips through the frozen encoder
(:mod:`ssvrl.eval.linear_online`). Under ``torchrun`` each rank extracts a disjoint shard
(:mod:`ssvrl.eval.distributed`); rank 0 writes ``probe.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ssvrl.augment import VideoAugment
from ssvrl.backbones import VideoBackbone, load_weights
from ssvrl.backbones.base import NoTeacherError, find_teacher
from ssvrl.config.loader import ConfigError, config_hash
from ssvrl.config.schema import ExperimentConfig
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.dataset import PretrainDataset, collate_samples
from ssvrl.data.epoch_sampler import EpochSampler
from ssvrl.data.eval_dataset import EvalClipDataset
from ssvrl.data.index import VideoIndex
from ssvrl.data.sampling import RandomClipSampler, TemporalView
from ssvrl.engine.build import build_encoder, build_objective, build_video_index, decode_config
from ssvrl.eval.checkpoints import checkpoint_epoch, checkpoint_label, probe_dir, split_encoder
from ssvrl.eval.distributed import device_for_rank, extract_sharded
from ssvrl.eval.features import FeatureSet
from ssvrl.eval.linear_online import train_online
from ssvrl.eval.linear_probe import LinearHead, topk_accuracy
from ssvrl.eval.protocol import LinearSettings, evaluate_cached, video_scores
from ssvrl.eval.report import Row, format_table
from ssvrl.utils.dist import rank, world_size

log = logging.getLogger("ssvrl")
__all__ = [
    "checkpoint_epoch", "default_out_dir", "format_table", "resolve_checkpoint",
    "resolve_encoder", "run_probe", "run_probes",
]


def resolve_checkpoint(cfg: ExperimentConfig, spec: str) -> Path | None:
    """``"random"`` -> None; ``"last"`` -> the newest run's ``last.ckpt``; else a path."""
    if split_encoder(spec)[1] == "teacher" and not Path(spec).is_file():
        raise ConfigError(
            f"checkpoint {spec!r}: the ':teacher' suffix is read by `ssvrl probe` and "
            "`ssvrl extract` only"
        )
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


def resolve_encoder(cfg: ExperimentConfig, spec: str) -> tuple[Path | None, str]:
    """``(file, encoder)`` of a spec with an optional ``:teacher`` suffix
    (:func:`~ssvrl.eval.checkpoints.split_encoder`). A teacher is looked for now, so a file
    without one fails (ConfigError naming it) before any extraction."""
    base, encoder = split_encoder(spec)
    ckpt = resolve_checkpoint(cfg, base)
    if encoder == "teacher":
        if ckpt is None:
            raise ConfigError(f"checkpoint {spec!r}: a random init has no teacher")
        try:
            find_teacher(ckpt)
        except NoTeacherError as err:
            raise ConfigError(str(err)) from err
    return ckpt, encoder


def default_out_dir(cfg: ExperimentConfig, ckpt: Path | None, encoder: str = "student") -> Path:
    """:func:`~ssvrl.eval.checkpoints.probe_dir`; random init: ``<out_dir>/<name>/probe_random``."""
    return probe_dir(ckpt, Path(cfg.out_dir) / cfg.name / "probe_random", encoder)


@dataclass
class _Probe:
    """What every step of one probe run shares."""

    cfg: ExperimentConfig
    backbone: VideoBackbone
    view: TemporalView
    aug: VideoAugment  # the objective's first view's recipe at the probe's crop size
    device: torch.device
    out: Path

    def bad(self, index: VideoIndex) -> BadVideoLog:
        return BadVideoLog(self.out / "bad_videos", len(index), self.cfg.data.max_bad_fraction)

    def extract(self, index: VideoIndex, clips: int, crops: int, copies: int) -> FeatureSet:
        ds = EvalClipDataset(
            index, self.view, clips, decode_config(self.cfg.data), self.bad(index), num_crops=crops
        )
        return extract_sharded(
            self.backbone, ds, clips_per_video=ds.clips_per_video,
            dim=self.backbone.num_features, batch_size=self.cfg.probe.batch_size,
            num_workers=self.cfg.data.num_workers, transform=self.aug.eval_transform,
            device=self.device, augment=self.aug, copies=copies, seed=self.cfg.seed,
        )

    def online_head(self, index: VideoIndex, num_classes: int) -> LinearHead:
        """``probe.mode: online``: one random augmented clip per video per epoch."""
        p, decode = self.cfg.probe, replace(decode_config(self.cfg.data), repeats=1)
        ds = PretrainDataset(
            index, RandomClipSampler((self.view,)), decode, self.bad(index), self.cfg.seed
        )
        sampler = EpochSampler(
            len(ds), seed=self.cfg.seed, num_replicas=world_size(), rank=rank(), drop_last=True
        )
        workers = self.cfg.data.num_workers
        loader = DataLoader(  # persistent: the epoch travels in the sampler's keys
            ds, batch_size=p.batch_size, sampler=sampler, num_workers=workers,
            collate_fn=collate_samples, persistent_workers=workers > 0,
        )

        def batches(epoch: int) -> DataLoader:
            sampler.set_epoch(epoch)
            return loader

        head = LinearHead(self.backbone.num_features, num_classes, p.feature_norm)
        return train_online(
            self.backbone, head, batches, self.aug, view=self.view.name, epochs=p.online_epochs,
            steps_per_epoch=len(loader), lr=p.lr, weight_decay=p.weight_decay, device=self.device,
        ).cpu()


def _setup(cfg: ExperimentConfig, ckpt: Path | None, out: Path, encoder: str) -> _Probe:
    pl.seed_everything(cfg.seed, verbose=False)  # a "random" init is the seed's init
    backbone = build_encoder(cfg)
    if ckpt is not None:
        load_weights(backbone, ckpt, encoder)
    view0 = build_objective(cfg, backbone.num_features).views()[0]
    p = cfg.probe
    view = TemporalView("probe", p.frames or view0.frames, p.stride or view0.stride)
    aug = VideoAugment(replace(view0.augment, crop_size=p.crop_size or view0.augment.crop_size))
    device = device_for_rank()
    return _Probe(cfg, backbone.to(device), view, aug.to(device), device, out)


def _protocol(probe: _Probe) -> dict[str, Any]:
    p, cfg = probe.cfg.probe, probe.cfg
    online = p.mode == "online"
    return {
        "evaluators": list(p.evaluators),
        "mode": p.mode,
        "train_clips": None if online else p.train_clips,
        "train_augment": None if online else p.train_augment,
        "test_clips": p.test_clips,
        "test_crops": p.test_crops,
        "test_views_per_video": p.test_clips * p.test_crops,
        "frames": probe.view.frames,
        "stride": probe.view.stride,
        "crop": probe.aug.cfg.crop_size,
        "feature_dim": probe.backbone.num_features,
        "classifier": "sgd, online" if online else p.classifier,
        "feature_norm": p.feature_norm,
        "epochs": p.online_epochs if online else p.epochs,
        "online_epochs": p.online_epochs if online else None,
        "lr": p.lr if online or p.classifier == "sgd" else None,
        "weight_decay": p.weight_decay,
        "knn_k": p.knn_k,
        "knn_temperature": p.knn_temperature,
        "retrieval": "test videos query train videos; gallery-mean centred, cosine",
        "split": cfg.data.split,
        "format": cfg.data.format,
        "world_size": world_size(),
    }


def run_probe(
    cfg: ExperimentConfig, checkpoint: str, out_dir: Path | None = None
) -> dict[str, Any]:
    """Run ``probe.evaluators`` on the frozen encoder of ``checkpoint`` (``...:teacher``: its
    EMA teacher's encoder); write ``probe.json``.

    Returns the result (also the JSON): ``metrics[evaluator]``, the linear probe's ``top1`` /
    ``top5`` at the top level, ``epoch``, ``encoder`` (student or teacher), ``protocol``, video
    counts, ``seconds``.
    """
    t0 = time.perf_counter()
    ckpt, encoder = resolve_encoder(cfg, checkpoint)
    p, evaluators = cfg.probe, tuple(cfg.probe.evaluators)
    probe = _setup(cfg, ckpt, out_dir or default_out_dir(cfg, ckpt, encoder), encoder)
    cached_linear = "linear" in evaluators and p.mode == "cached"
    train_index = build_video_index(cfg.data, "train")
    test_index = build_video_index(cfg.data, "test")
    num_classes = len(train_index.classes)
    t1 = time.perf_counter()
    train = None
    if cached_linear or {"knn", "retrieval"} & set(evaluators):
        copies = p.train_augment if cached_linear else 0
        train = probe.extract(train_index, p.train_clips, 1, copies)
    test = probe.extract(test_index, p.test_clips, p.test_crops, 0)
    t2 = time.perf_counter()
    metrics: dict[str, dict[str, float]] = {}
    if train is not None:
        on_cache = tuple(e for e in evaluators if e != "linear" or cached_linear)
        settings = LinearSettings(
            p.classifier, p.feature_norm, p.epochs, p.lr, p.weight_decay, p.sgd_batch_size, cfg.seed
        )
        metrics = evaluate_cached(
            train, test, num_classes, on_cache, settings, p.knn_k, p.knn_temperature
        )
    if "linear" in evaluators and p.mode == "online":
        head = probe.online_head(train_index, num_classes)
        readable = test.readable()
        metrics["linear"] = topk_accuracy(video_scores(head, readable), readable.labels)
    t3 = time.perf_counter()
    result = {
        "checkpoint": str(ckpt) if ckpt else "random",
        "epoch": checkpoint_epoch(ckpt),
        "encoder": encoder,
        **metrics.get("linear", {}),
        "metrics": {e: metrics[e] for e in evaluators},
        "protocol": _protocol(probe),
        "num_train_videos": len(train_index) if train is None else int(train.valid.sum()),
        "num_test_videos": int(test.valid.sum()),
        "unreadable_videos": int((~test.valid).sum())
        + (0 if train is None else int((~train.valid).sum())),
        "config_hash": config_hash(cfg),
        "seconds": {
            "features": round(t2 - t1, 2),
            "fit": round(t3 - t2, 2),
            "total": round(time.perf_counter() - t0, 2),
        },
    }
    if rank() == 0:
        probe.out.mkdir(parents=True, exist_ok=True)
        (probe.out / "probe.json").write_text(json.dumps(result, indent=2))
        log.info("probe results written to %s", probe.out / "probe.json")
    return result


def run_probes(
    cfg: ExperimentConfig, specs: list[str], out_dir: Path | None = None
) -> list[Row]:
    """:func:`run_probe` for each checkpoint spec (``random``, ``last`` or a path, each with an
    optional ``:teacher``) with the same protocol; with ``out_dir`` and several specs each
    writes ``out_dir/<label>/``. Every spec is resolved before the first probe runs."""
    rows = []
    labels = [checkpoint_label(*resolve_encoder(cfg, spec)) for spec in specs]
    for spec, label in zip(specs, labels, strict=True):
        out = out_dir
        if out_dir is not None and len(specs) > 1:
            out = out_dir / label.replace("/", "_").replace(" ", "_").replace(":", "_")
        rows.append((label, run_probe(cfg, spec, out)))
    return rows
