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
    progress_bar: bool = True
    deterministic: bool = False


@dataclass(frozen=True)
class ProbeConfig:
    """Linear probe on frozen features (CVRL Sec. 4.1 protocol, adapted to cached features)."""

    checkpoint: str = "last"  # "last" (of this run), "random", or a checkpoint path
    frames: int | None = None  # None: the objective's first view
    stride: int | None = None
    crop_size: int | None = None
    train_clips: int = 4  # clips per training video, each one training example
    test_clips: int = 10  # clips per test video, features averaged
    epochs: int = 200  # full-batch optimisation steps of the classifier
    lr: float = 0.1
    weight_decay: float = 1e-4
    batch_size: int = 16  # videos per feature-extraction batch


@dataclass(frozen=True)
class FinetuneConfig:
    """Supervised fine-tuning of the whole encoder plus a classifier (``ssvrl finetune``)."""

    checkpoint: str = "last"  # "last" (of this run), "random", or a checkpoint path


@dataclass(frozen=True)
class OnlineProbeConfig:
    """A linear head on detached features, trained alongside pretraining and logged per epoch."""

    enabled: bool = False


@dataclass(frozen=True)
class ExtractConfig:
    """Sliding-window feature extraction over untrimmed videos (``ssvrl extract``)."""

    checkpoint: str = "last"  # "last" (of this run), "random", or a checkpoint path


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
