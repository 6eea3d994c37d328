"""The schema sections a pretraining run is built from: ``data``, ``backbone``, ``optim`` and
``trainer``, one frozen dataclass each (the field comments are the reference). Assembled into
:class:`~ssvrl.config.schema.ExperimentConfig`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


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
    # "residual": the backbone is fed frame differences x[t+1] - x[t] (ssvrl.backbones.residual)
    input: Literal["rgb", "residual"] = "rgb"


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
