"""The experiment schema: dataclasses are the schema, YAML holds overrides only.

The ``objective`` section's type depends on ``objective.name``: :func:`schema_for` imports the
experiment's ``plugins``, looks the objective up in the registry and returns an
``ExperimentConfig`` whose ``objective`` field has that objective's config dataclass, so its
keys are validated as strictly as the rest. Derived values (e.g. the probe's clip length when
left unset) are computed by the code that needs them, never written back.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Literal

from ssvrl.config.backbone_check import check_backbone_section
from ssvrl.objectives import OBJECTIVES, ObjectiveConfig
from ssvrl.registry import RegistryError


@dataclass(frozen=True)
class DataConfig:
    # ucf101 | hmdb51: official split files; csv: `path,label`; kinetics: release CSVs;
    # ssv2: Something-Something v2 JSON; folder: <root>/<class>/<video>; rawframes: mmaction2
    # frame-folder lists. Layouts and default file names: ssvrl.data.index.build_index.
    format: Literal["ucf101", "csv", "hmdb51", "kinetics", "ssv2", "folder", "rawframes"] = "ucf101"
    root: str = "data/videos"  # the videos folder; annotation paths are relative to it
    # ucf101: classInd.txt + trainlistNN/testlistNN; hmdb51: <class>_test_split<k>.txt;
    # ssv2: the release JSONs; csv/kinetics: default folder of train_list/test_list
    annotations: str | None = None
    split: int = 1  # ucf101, hmdb51: 1..3
    # csv: `path,label` rows; kinetics: CSV (default annotations/train.csv, validate.csv);
    # ssv2: JSON; folder: plain path lists (both or neither); rawframes: `dir frames label`
    train_list: str | None = None
    test_list: str | None = None
    test_fraction: float = 0.2  # folder without lists: share of videos in test (hash of path)
    backend: Literal["decord", "pyav"] = "decord"
    short_side: int = 128  # decoded frames are resized so min(H, W) == short_side
    batch_size: int = 32  # per process
    num_workers: int = 2
    max_bad_fraction: float = 0.1  # stop when more than this fraction of videos is unreadable
    max_retries: int = 20  # unreadable videos replaced in a row before a sample fails
    max_missing_fraction: float = 0.5  # listed-but-absent files allowed before failing
    decode_timeout: float = 60.0  # seconds per video decode before it counts as bad; 0: none
    sample_by: Literal["index", "time"] = "index"  # time: even in time on variable-rate videos
    repeats: int = 1  # samples per decoded video (repeated augmentation); divides batch_size
    frame_fps: float = 30.0  # frame-folder videos: their frame rate (JPEG folders store none)
    frame_template: str = "img_{:05d}.jpg"  # frame-folder videos: file of frame n (from 1)
    # Motion maps of views that use one (MCL, motion_map): "frame_diff" on the device, or
    # "flow": the magnitude of optical flow stored beside frame folders (denseflow x_/y_ JPEGs)
    motion_source: Literal["frame_diff", "flow"] = "frame_diff"
    flow_bound: float = 20.0  # "flow": the bound the flow JPEGs were quantised with (px)
    cache_dir: str | None = None  # index cache; None: <root>/.ssvrl_cache or ~/.cache/ssvrl


@dataclass(frozen=True)
class BackboneConfig:
    name: str = "r3d_18"
    weights: str | None = None  # local state dict (.pt / .safetensors / ssvrl checkpoint)
    width: int | None = None  # small3d only: channel width of the first stage
    # Constructor arguments of the named backbone, checked against its signature at load time,
    # e.g. for the video ViT: {patch_size: 8, tubelet: 2, attention: joint, drop_path_rate: 0.1}
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3  # at batch_size 256 when lr_scaling == "linear"; else as given
    lr_scaling: Literal["none", "linear"] = "none"  # linear: lr * global_batch / 256
    weight_decay: float = 1e-4  # not applied to biases and normalisation weights
    momentum: float = 0.9  # sgd
    warmup_epochs: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr


@dataclass(frozen=True)
class TrainerConfig:
    max_epochs: int = 100
    max_steps: int = -1  # -1: no limit beyond max_epochs
    accelerator: str = "auto"
    devices: int = 1  # per node
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for several processes; "auto" picks it when devices > 1
    precision: str = "32-true"  # "bf16-mixed", "16-mixed"
    gradient_clip_val: float = 0.0
    log_every_n_steps: int = 10
    checkpoint_every_n_epochs: int = 1
    # Also (over)write checkpoints/last.ckpt every N optimizer steps, so a run killed mid-epoch
    # resumes from there exactly (ssvrl.engine.step_checkpoint); 0: at epoch ends only.
    checkpoint_every_n_steps: int = 0
    progress_bar: bool = True
    deterministic: bool = False
    # Non-finite loss/gradients: the step is skipped on every rank; this many in a row stop the
    # run (0: guard off, no per-step host sync). See ssvrl.engine.nonfinite.
    max_nonfinite_steps: int = 5
    # Warn (once per epoch) when train/embed_std, the anchor embeddings' spread x sqrt(D)
    # (~1 spread, 0 collapsed), stays below this all epoch; 0: log only. ssvrl.engine.collapse
    collapse_warn_std: float = 0.05
    # Backbone weights and augmented views in channels-last-3d layout (NDHWC): faster 3D
    # convolutions on NVIDIA GPUs (R3D-18 bf16 step 1.6x on an H200); no effect on results.
    channels_last: bool = False


@dataclass(frozen=True)
class ProbeConfig:
    """Frozen-encoder evaluation (``ssvrl probe``): linear probe, kNN and retrieval.

    Test protocol: ``test_clips`` clips uniformly over time x ``test_crops`` squares along the
    long side (SlowFast's 10 x 3 inference), averaged per video. Linear probe: ``cached`` fits
    on features extracted once; ``online`` trains by SGD on augmented clips through the frozen
    encoder every epoch. kNN: the weighted vote of Wu et al. 2018 (k=20, T=0.07 as in DINO).
    Retrieval: test videos query the training videos, R@k (as in CoCLR and FAME).
    """

    checkpoint: str = "last"  # "last" (of this run), "random", or a path; ":teacher": EMA teacher
    evaluators: tuple[Literal["linear", "knn", "retrieval"], ...] = ("linear", "knn", "retrieval")
    mode: Literal["cached", "online"] = "cached"  # linear probe on cached features or online
    frames: int | None = None  # None: the objective's first view
    stride: int | None = None
    crop_size: int | None = None
    train_clips: int = 4  # clips per training video (centre crop), each one training example
    train_augment: int = 0  # cached: augmented copies of every training clip, added as examples
    test_clips: int = 10  # clips per test video, uniformly over time
    test_crops: Literal[1, 3] = 3  # squares per clip: centre, or start/centre/end of long side
    classifier: Literal["lbfgs", "sgd"] = "lbfgs"  # cached mode: full-batch L-BFGS or SGD
    feature_norm: Literal["standardize", "l2", "bn", "none"] = "standardize"  # before the fc
    epochs: int = 200  # cached: L-BFGS iterations, or SGD epochs over the cached features
    online_epochs: int = 30  # online: passes over the training videos, one random clip each
    lr: float = 0.1  # SGD (cached sgd and online), cosine-decayed, momentum 0.9
    weight_decay: float = 1e-4  # L2 penalty on the classifier's weights
    sgd_batch_size: int = 256  # cached sgd: clips per step
    knn_k: int = 20
    knn_temperature: float = 0.07
    batch_size: int = 16  # videos per feature-extraction (and online training) batch

    def __post_init__(self) -> None:
        from ssvrl.config.errors import ConfigError

        positive = ("train_clips", "test_clips", "epochs", "online_epochs", "sgd_batch_size",
                    "knn_k", "batch_size", "knn_temperature", "lr")
        bad = [n for n in positive if getattr(self, n) <= 0]
        bad += ["train_augment"] if self.train_augment < 0 else []
        if bad:
            raise ConfigError(f"probe.{bad[0]} must be positive, got {getattr(self, bad[0])!r}",
                              key=f"probe.{bad[0]}")
        if not self.evaluators or len(set(self.evaluators)) != len(self.evaluators):
            raise ConfigError(f"probe.evaluators: a non-empty list without repeats, got "
                              f"{list(self.evaluators)}", key="probe.evaluators")


@dataclass(frozen=True)
class FinetuneConfig:
    """Supervised fine-tuning of the whole encoder plus a classifier (``ssvrl finetune``).

    The "fine-tuning" protocol of the video SSL tables (CVRL Sec. 4.3, UCF101 / HMDB51): the
    pretrained encoder initialises the network, dropout and a new linear classifier follow it,
    and everything is trained end to end with labels on one random clip per video and epoch;
    each test video is scored by ``test_clips`` clips, softmax scores averaged. The defaults
    are our choice of a common UCF101 recipe (SGD + warm-up + cosine, dropout 0.5, colour
    jitter 0.4/0.4/0.4/0.1); ``experiments/finetune/`` holds the recipes with their sources.
    """

    checkpoint: str = "last"  # "last" (of this run), "random", or a checkpoint path
    epochs: int = 50
    batch_size: int = 32  # training clips per process and step (one per video)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.025  # the classifier's, as given (no batch-size scaling)
    backbone_lr_mult: float = 1.0  # encoder lr = lr * backbone_lr_mult
    momentum: float = 0.9  # sgd (Nesterov)
    weight_decay: float = 1e-4  # not applied to biases and normalisation weights
    warmup_epochs: float = 2.0  # linear warm-up, then cosine decay to 0 (per step)
    label_smoothing: float = 0.0
    dropout: float = 0.5  # on the encoder's features, before the classifier
    frames: int | None = None  # None: the objective's first view (as the probe)
    stride: int | None = None
    crop_size: int | None = None
    # Training clips: random resized crop (area fraction range), flip, colour jitter
    # (brightness, contrast, saturation, hue with probability jitter_p); no grayscale or blur.
    scale: tuple[float, float] = (0.3, 1.0)
    flip_p: float = 0.5  # 0 where a flip changes the class (the synthetic left/right motions)
    jitter_p: float = 0.8
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    test_clips: int = 10  # clips per test video, spread evenly, centre crop
    test_batch_size: int = 4  # test videos per batch (each test_clips clips)

    def __post_init__(self) -> None:
        from ssvrl.config.errors import ConfigError

        for name in ("scale", "jitter"):  # YAML gives lists: store tuples (hashable, frozen)
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "backbone_lr_mult": self.backbone_lr_mult >= 0,
            "dropout": 0 <= self.dropout < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "scale": len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1,
            "flip_p": 0 <= self.flip_p <= 1,
            "jitter_p": 0 <= self.jitter_p <= 1,
            "jitter": len(self.jitter) == 4 and min(self.jitter) >= 0 and self.jitter[3] <= 0.5,
            "test_clips": self.test_clips >= 1,
            "test_batch_size": self.test_batch_size >= 1,
        }
        bad = next((k for k, ok in checks.items() if not ok), None)
        if bad is not None:
            raise ConfigError(
                f"finetune.{bad}: invalid value {getattr(self, bad)!r}", key=f"finetune.{bad}"
            )


@dataclass(frozen=True)
class OnlineProbeConfig:
    """A linear head on detached backbone features, trained alongside pretraining and logged
    per epoch (``train/online_top1``, ``val/online_top1``), as solo-learn's online linear
    evaluation and SimCLR's ``lineareval_while_pretraining``; see :mod:`ssvrl.engine.online_probe`.
    """

    enabled: bool = False
    # The head's own lr, in optim.name's optimizer. CVRL quickstart (AdamW, 240 steps), final
    # val/online_top1 at lr 1e-3: 32-35, at 0.1: 97.2 (offline probe of the same run: 100).
    lr: float = 0.1
    weight_decay: float = 0.0  # the head's own (solo-learn: none on the online classifier)
    every_n_epochs: int = 1  # validation on the test split every n epochs; 0: never
    val_clips: int = 2  # clips per test video, spread evenly, features averaged
    batch_size: int = 16  # test videos per validation batch (x val_clips clips)

    def __post_init__(self) -> None:
        from ssvrl.config.loader import ConfigError

        bad = {
            "lr": self.lr <= 0,
            "weight_decay": self.weight_decay < 0,
            "every_n_epochs": self.every_n_epochs < 0,
            "val_clips": self.val_clips < 1,
            "batch_size": self.batch_size < 1,
        }
        for key, wrong in bad.items():
            if wrong:
                raise ConfigError(
                    f"online_probe.{key}={getattr(self, key)!r} is out of range "
                    "(lr > 0, weight_decay >= 0, every_n_epochs >= 0, val_clips and batch_size "
                    ">= 1)",
                    key=f"online_probe.{key}",
                )


@dataclass(frozen=True)
class ExtractConfig:
    """Sliding-window features of untrimmed videos (``ssvrl extract``), one ``(num_windows,
    D)`` array per video for temporal localisation (TSP, Alwassel et al. 2021). Window starts
    and the tail rule: ``ssvrl.eval.windows``."""

    checkpoint: str = "last"  # "last" (of this run), "random", or a path; ":teacher": EMA teacher
    frames: int | None = None  # frames per window; None: the objective's first view
    stride: int | None = None  # frames between a window's sampled frames; None: the view's
    window_stride: int | None = None  # frames between window starts; None: the window's span
    crop_size: int | None = None  # centre square resized to this; None: the view's crop size
    # align_end: a last window ending on the last frame; pad: keep the even grid until the end,
    # repeating the last frame; drop: no partial tail
    tail: Literal["align_end", "pad", "drop"] = "align_end"
    batch_size: int = 16  # windows per forward pass
    chunk_frames: int = 256  # most frames one decode call reads (bounds memory per video)
    dtype: Literal["float32", "float16"] = "float32"  # of the saved arrays


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    out_dir: str = "lightning_logs"  # runs go to <out_dir>/<name>/version_N
    plugins: list[str] = field(default_factory=list)  # modules imported before validation
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    online_probe: OnlineProbeConfig = field(default_factory=OnlineProbeConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)


def import_plugins(modules: list[str]) -> None:
    """Import each ``plugins:`` module (it registers objectives/backbones as it loads)."""
    from ssvrl.config.loader import ConfigError

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"plugins: cannot import {name!r}: {err}", key="plugins") from err


def schema_for(raw: Mapping[str, Any]) -> type[ExperimentConfig]:
    """The ExperimentConfig subclass whose ``objective`` has the named objective's config."""
    from ssvrl.config.loader import ConfigError

    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(
            f"'plugins' must be a list of module names, got {plugins!r}", key="plugins"
        )
    import_plugins(plugins)
    from ssvrl.objectives.entry_points import load_entry_points

    load_entry_points()
    check_backbone_section(raw.get("backbone"))
    section = raw.get("objective") or {}
    name = section.get("name", ObjectiveConfig.name) if isinstance(section, Mapping) else None
    try:
        cfg_cls = OBJECTIVES.get(str(name)).Config
    except RegistryError as err:
        raise ConfigError(f"objective.name: {err}", key="objective.name") from err
    return _experiment_with(cfg_cls)  # type: ignore[arg-type]


@functools.cache
def _experiment_with(cfg_cls: type[ObjectiveConfig]) -> type[ExperimentConfig]:
    """One class per objective config (cached, so configs built twice compare equal)."""
    return make_dataclass(
        f"ExperimentConfig[{cfg_cls.__name__}]",
        [("objective", cfg_cls, field(default_factory=cfg_cls))],
        bases=(ExperimentConfig,),
        frozen=True,
    )
