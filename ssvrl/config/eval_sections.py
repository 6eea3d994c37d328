"""The schema sections of the evaluations: ``probe`` (frozen-encoder linear probe, kNN,
retrieval), ``finetune``, ``online_probe`` and ``extract``, one frozen dataclass each with its
value checks. Assembled into :class:`~ssvrl.config.schema.ExperimentConfig`, which re-exports
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
