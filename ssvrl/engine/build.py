"""Everything built from an :class:`ExperimentConfig`: the only engine code that reads it."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from ssvrl.backbones import VideoBackbone, build_backbone
from ssvrl.config.loader import ConfigError, save_config
from ssvrl.config.schema import ExperimentConfig
from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.datamodule import PretrainDataModule
from ssvrl.data.dataset import PretrainDataset
from ssvrl.data.eval_dataset import EvalClipDataset
from ssvrl.data.sampling import TemporalView
from ssvrl.engine.batchnorm import sync_batchnorm
from ssvrl.engine.callbacks import BadVideoSummary
from ssvrl.engine.checkpoint_io import AtomicCheckpointIO
from ssvrl.engine.data_build import DataError as DataError  # these 3 re-exported (X as X):
from ssvrl.engine.data_build import build_video_index as build_video_index
from ssvrl.engine.data_build import decode_config as decode_config  # imported from here too
from ssvrl.engine.module import PretrainModule
from ssvrl.engine.online_probe import OnlineProbe, anchor_view
from ssvrl.engine.preemption import Preempted, StopFlag, catch_sigterm
from ssvrl.engine.resume import ResumeInfo, check_resume
from ssvrl.engine.rng_state import RngState
from ssvrl.engine.run_dir import SharedRunDir, launch_rank, placeholder_run_dir
from ssvrl.engine.step_checkpoint import StepCheckpoint
from ssvrl.objectives import OBJECTIVES, Objective

log = logging.getLogger("ssvrl")


def make_run_dir(cfg: ExperimentConfig) -> Path:
    """``<out_dir>/<name>/version_N`` with the next free N; ``config.yaml`` written into it.

    Only global rank 0 creates it; other ranks get a placeholder until :class:`SharedRunDir`
    hands them rank 0's folder (:mod:`ssvrl.engine.run_dir`)."""
    if launch_rank(cfg.trainer.devices) > 0:
        return placeholder_run_dir()
    base = Path(cfg.out_dir) / cfg.name
    base.mkdir(parents=True, exist_ok=True)
    taken = [
        int(p.name.split("_")[1]) for p in base.glob("version_*") if p.name.split("_")[1].isdigit()
    ]
    run_dir = base / f"version_{max(taken, default=-1) + 1}"
    run_dir.mkdir()
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def build_encoder(cfg: ExperimentConfig) -> VideoBackbone:
    """The backbone with ``backbone.options`` (checked at config load) as constructor
    arguments; ``backbone.width`` is the older spelling of ``options.width`` for small3d."""
    kwargs: dict[str, object] = dict(cfg.backbone.options)
    if cfg.backbone.width is not None:
        kwargs["width"] = cfg.backbone.width
    return build_backbone(cfg.backbone.name, cfg.backbone.weights, cfg.backbone.input, **kwargs)


def build_objective(cfg: ExperimentConfig, embed_dim: int) -> Objective:
    return OBJECTIVES.get(cfg.objective.name)(cfg.objective, embed_dim)


@dataclass
class PretrainParts:
    module: PretrainModule
    datamodule: PretrainDataModule
    bad: BadVideoLog


def check_pretrain_config(cfg: ExperimentConfig) -> None:
    """Cross-field checks the schema cannot express; raises ConfigError before any run folder
    is made."""
    data = cfg.data
    if data.repeats > 1 and not OBJECTIVES.get(cfg.objective.name).supports_repeats:
        raise ConfigError(
            f"data.repeats={data.repeats}: objective {cfg.objective.name!r} does not support "
            "several samples of one video per batch (its in-batch negatives would include the "
            "same video); use data.repeats=1"
        )
    if data.repeats < 1 or data.batch_size % data.repeats:
        raise ConfigError(
            f"data.batch_size={data.batch_size} must be a multiple of data.repeats={data.repeats}"
            " (>= 1): a batch holds batch_size / repeats videos"
        )
    if cfg.trainer.checkpoint_every_n_steps < 0:
        raise ConfigError(
            f"trainer.checkpoint_every_n_steps={cfg.trainer.checkpoint_every_n_steps} must be "
            ">= 0 (0: checkpoints at epoch ends only)",
            key="trainer.checkpoint_every_n_steps",
        )


def build_online_probe(
    cfg: ExperimentConfig,
    objective: Objective,
    num_features: int,
    num_classes: int,
    run_dir: Path,
) -> tuple[OnlineProbe, EvalClipDataset | None]:
    """The online probe's head (built after the backbone and objective, so their
    initialisation is the same with and without it) and its test-split dataset (None when
    ``every_n_epochs`` is 0): the anchor view's timing, ``val_clips`` clips, centre crop."""
    c = cfg.online_probe
    anchor = anchor_view(objective)
    probe = OnlineProbe(num_features, num_classes, anchor, c.lr, c.weight_decay)
    if c.every_n_epochs == 0:
        return probe, None
    index = build_video_index(cfg.data, "test")
    bad = BadVideoLog(run_dir / "bad_videos_test", len(index), cfg.data.max_bad_fraction)
    view = TemporalView("online_probe", anchor.frames, anchor.stride, anchor.fps)
    decode = replace(decode_config(cfg.data), repeats=1, flow=False)  # no motion maps needed
    return probe, EvalClipDataset(index, view, c.val_clips, decode, bad)


def build_pretrain(cfg: ExperimentConfig, run_dir: Path) -> PretrainParts:
    check_pretrain_config(cfg)
    backbone = build_encoder(cfg)
    objective = build_objective(cfg, backbone.num_features)
    index = build_video_index(cfg.data, "train")
    bad = BadVideoLog(run_dir / "bad_videos", len(index), cfg.data.max_bad_fraction)
    probe, val = None, None
    if cfg.online_probe.enabled:
        probe, val = build_online_probe(
            cfg, objective, backbone.num_features, len(index.classes), run_dir
        )
    world = cfg.trainer.devices * cfg.trainer.num_nodes
    module = PretrainModule(
        backbone,
        objective,
        cfg.optim,
        cfg.data.batch_size * world,
        probe,
        max_nonfinite_steps=cfg.trainer.max_nonfinite_steps,
        collapse_warn_std=cfg.trainer.collapse_warn_std,
        channels_last=cfg.trainer.channels_last,
    )
    dataset = PretrainDataset(
        index, objective.clip_sampler(), decode_config(cfg.data), bad, cfg.seed
    )
    dm = PretrainDataModule(
        dataset,
        cfg.data.batch_size,
        cfg.data.num_workers,
        cfg.seed,
        val_dataset=val,
        val_batch_size=cfg.online_probe.batch_size,
    )
    return PretrainParts(module, dm, bad)


def build_trainer(cfg: ExperimentConfig, run_dir: Path, bad: BadVideoLog) -> pl.Trainer:
    t = cfg.trainer
    # The run folder already holds config.yaml, which the CSV logger mistakes for old logs.
    warnings.filterwarnings(
        "ignore", message="Experiment logs directory .* exists and is not empty"
    )
    # The module, not the datamodule, owns device transfer and augmentation (by design).
    hooks = "(on_after_batch_transfer|transfer_batch_to_device)"
    warnings.filterwarnings("ignore", message=f"You have overridden `{hooks}`")
    # A resume goes into a new version_N on purpose, and its loader does resume mid-epoch
    # (the datamodule's data position, ssvrl.data.datamodule), whatever Lightning assumes.
    warnings.filterwarnings("ignore", message="The dirpath has changed from")
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")
    version = run_dir.name
    loggers = [
        TensorBoardLogger(cfg.out_dir, name=cfg.name, version=version, default_hp_metric=False),
        CSVLogger(cfg.out_dir, name=cfg.name, version=version),
    ]
    ckpt = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        save_last=True,
        save_top_k=-1,
        every_n_epochs=t.checkpoint_every_n_epochs,
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        save_on_train_epoch_end=True,  # as without validation, whatever the online probe does
        enable_version_counter=False,  # overwrite last.ckpt (StepCheckpoint writes it too)
    )
    # Exact resume and clean preemption (see each module): RngState before StepCheckpoint, so
    # a checkpoint written at the first step after a resume holds the restored generators.
    steps = StepCheckpoint(ckpt, t.checkpoint_every_n_steps, StopFlag())
    probe = cfg.online_probe
    validate = probe.enabled and probe.every_n_epochs > 0
    trainer = pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        sync_batchnorm=sync_batchnorm(t),  # policy: ssvrl.engine.batchnorm
        precision=t.precision,  # type: ignore[arg-type]
        gradient_clip_val=t.gradient_clip_val or None,
        log_every_n_steps=t.log_every_n_steps,
        logger=loggers,
        callbacks=[
            SharedRunDir(run_dir, bad), RngState(), steps, ResumeInfo(cfg), ckpt,
            LearningRateMonitor("step"), BadVideoSummary(bad, run_dir),
            # the bar reads its metrics with .item() (a host sync on a GPU) at each refresh:
            # refresh when the loggers write, not every step
            *([TQDMProgressBar(refresh_rate=t.log_every_n_steps)] if t.progress_bar else []),
        ],
        plugins=[AtomicCheckpointIO()],  # a kill mid-write never corrupts last.ckpt
        use_distributed_sampler=False,
        enable_progress_bar=t.progress_bar,
        deterministic=t.deterministic,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=probe.every_n_epochs if validate else 1,
        limit_val_batches=None if validate else 0,
    )
    StepCheckpoint.arm(trainer, steps.flag)  # SIGTERM: ssvrl.engine.preemption
    return trainer


def fit(
    cfg: ExperimentConfig, ckpt_path: str | Path | None = None, *, force_resume: bool = False
) -> Path:
    """Pretrain as configured; returns the run folder (holding ``checkpoints/last.ckpt``).

    ``ckpt_path``: resume from that checkpoint into a new ``version_N`` folder, exactly where
    it stopped (weights, teachers and queues, optimizer, schedules, RNG states and the position
    in the epoch's data); refused with a ConfigError listing the changed keys when ``cfg``
    differs from the checkpoint's in a way that changes results, unless ``force_resume``
    (:mod:`ssvrl.engine.resume`).

    Raises :class:`~ssvrl.engine.preemption.Preempted` after SIGTERM, once ``last.ckpt`` is
    written at the next step boundary (``ssvrl.engine.step_checkpoint``).
    """
    check_pretrain_config(cfg)
    if ckpt_path is not None:
        check_resume(cfg, Path(ckpt_path), force_resume)
    with catch_sigterm(StopFlag()) as stop:  # a SIGTERM while building counts too
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        run_dir = make_run_dir(cfg)
        parts = build_pretrain(cfg, run_dir)
        trainer = build_trainer(cfg, run_dir, parts.bad)
        StepCheckpoint.arm(trainer, stop)
        if stop.requested:
            raise Preempted(Path(ckpt_path) if ckpt_path else None, None, None)
        # weights_only: a resumed checkpoint is never unpickled beyond tensors and plain types.
        trainer.fit(
            parts.module,
            datamodule=parts.datamodule,
            ckpt_path=None if ckpt_path is None else str(ckpt_path),
            weights_only=True,
        )
    run_dir = SharedRunDir.of(trainer, run_dir)  # rank 0's folder on every rank
    n_bad = parts.bad.count()
    if n_bad and trainer.is_global_zero:  # one summary line per run, not one per rank
        log.warning(
            "%d unreadable videos were skipped; list in %s", n_bad, run_dir / "bad_videos.json"
        )
    return run_dir
