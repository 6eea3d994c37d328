"""``ssvrl extract``: sliding-window features of untrimmed videos from an experiment config.

The TSP use case (Alwassel et al., ICCVW 2021): features of a pretrained video encoder at a fixed
window stride over every video, one ``(num_windows, D)`` ``.npy`` per video, as temporal action
localisation methods consume them. The encoder, its weights and the eval transform are built
as the linear probe builds them (:func:`ssvrl.engine.evaluate.run_probe`): ``extract.checkpoint``
resolved by :func:`~ssvrl.engine.evaluate.resolve_encoder` (``...:teacher``: the EMA teacher's
encoder, recorded as that suffix in ``extract.json``), windows of the objective's first
view unless ``extract.frames`` / ``extract.stride`` say otherwise, the centre square of the
short side resized to the view's crop size (or ``extract.crop_size``), normalised with the
view's statistics. Window placement: :mod:`ssvrl.eval.windows`; streaming decode:
:mod:`ssvrl.eval.window_stream`; files written: :mod:`ssvrl.eval.extract_output`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ssvrl.augment import VideoAugment
from ssvrl.backbones import load_weights
from ssvrl.config.errors import ConfigError
from ssvrl.config.loader import config_hash
from ssvrl.config.schema import ExperimentConfig
from ssvrl.engine.build import build_encoder, build_objective, build_video_index, decode_config
from ssvrl.engine.evaluate import resolve_encoder
from ssvrl.eval.extract_inputs import VideoItem, videos_from_indexes
from ssvrl.eval.sliding_features import StreamSettings, extract_videos
from ssvrl.eval.windows import WindowSpec

log = logging.getLogger("ssvrl")

__all__ = ["check_extract_config", "dataset_videos", "run_extract"]


def check_extract_config(cfg: ExperimentConfig) -> None:
    """Raise ConfigError naming the first ``extract.*`` value that cannot work."""
    e = cfg.extract
    positive = {
        "frames": e.frames,
        "stride": e.stride,
        "window_stride": e.window_stride,
        "crop_size": e.crop_size,
        "batch_size": e.batch_size,
        "chunk_frames": e.chunk_frames,
    }
    for key, value in positive.items():
        if value is not None and value < 1:
            raise ConfigError(f"extract.{key} must be >= 1, got {value}", key=f"extract.{key}")


def dataset_videos(cfg: ExperimentConfig) -> list[VideoItem]:
    """The config's dataset, train and test subsets, each video once, named relative to
    ``data.root``."""
    return videos_from_indexes(build_video_index(cfg.data, s) for s in ("train", "test"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_extract(cfg: ExperimentConfig, items: list[VideoItem], out: Path) -> dict[str, Any]:
    """Extract features of ``items`` into ``out`` as ``cfg.extract`` says; returns the summary
    written to ``out/extract.json``."""
    check_extract_config(cfg)
    e = cfg.extract
    try:
        ckpt, encoder = resolve_encoder(cfg, e.checkpoint)
    except (FileNotFoundError, ConfigError) as err:
        raise ConfigError(f"extract.checkpoint={e.checkpoint!r}: {err}") from err
    torch.manual_seed(cfg.seed)  # a "random" encoder is the seed's initialisation
    backbone = build_encoder(cfg)
    if ckpt is not None:
        try:
            load_weights(backbone, ckpt, encoder)
        except ValueError as err:  # shape mismatch: the backbone config is not the run's
            raise ConfigError(
                f"{str(err).splitlines()[0]} ...; backbone.* must match the config.yaml of the "
                "run that wrote the checkpoint",
                key="backbone",
            ) from err
    view0 = build_objective(cfg, backbone.num_features).views()[0]
    frames, stride = e.frames or view0.frames, e.stride or view0.stride
    if e.chunk_frames < frames:
        raise ConfigError(
            f"extract.chunk_frames={e.chunk_frames} must hold one window of {frames} frames",
            key="extract.chunk_frames",
        )
    span = (frames - 1) * stride + 1
    spec = WindowSpec(frames, stride, e.window_stride or span, e.tail)
    aug = VideoAugment(replace(view0.augment, crop_size=e.crop_size or view0.augment.crop_size))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone.to(device)
    aug.to(device)
    decode = replace(decode_config(cfg.data), sample_by="index", flow=False, repeats=1)
    # The teacher's spec keeps its suffix; the student's stays as before (older folders resume).
    source = "random" if ckpt is None else str(ckpt) + (":teacher" if encoder == "teacher" else "")
    protocol = {
        "checkpoint": source,
        "checkpoint_sha256": _sha256(ckpt) if ckpt else None,
        "seed": None if ckpt else cfg.seed,
        "backbone": cfg.backbone.name,
        "feature_dim": backbone.num_features,
        "frames": spec.frames,
        "frame_stride": spec.stride,
        "window_stride": spec.window_stride,
        "window_span": spec.span,
        "tail": spec.tail,
        "crop": "centre square of the short side, resized to crop_size",
        "crop_size": aug.cfg.crop_size,
        "short_side": decode.short_side,
        "backend": decode.backend,
        "mean": list(aug.cfg.mean) if aug.cfg.normalize else None,
        "std": list(aug.cfg.std) if aug.cfg.normalize else None,
        "dtype": e.dtype,
    }
    settings = StreamSettings(decode, e.batch_size, e.chunk_frames, cfg.data.num_workers, e.dtype)
    extra = {"config_hash": config_hash(cfg), "device": str(device)}
    log.info("extracting %d videos into %s (%s)", len(items), out, protocol["checkpoint"])
    return extract_videos(items, out, backbone, aug.eval_transform, spec, settings, protocol, extra)
