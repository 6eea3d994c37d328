"""Dataset indexes and decoding settings built from a :class:`DataConfig`: the subset's
:class:`VideoIndex` (from the ``ssvrl data check`` cache when valid, else built from the
annotations, and refused when too many listed files are missing) and the
:class:`DecodeConfig` every dataset of a run decodes with."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ssvrl.config.schema import DataConfig
from ssvrl.data.dataset import DecodeConfig
from ssvrl.data.index import VideoIndex, build_index
from ssvrl.data.index_cache import load_cached_index

log = logging.getLogger("ssvrl")


class DataError(RuntimeError):
    """The dataset cannot be used as configured (too many missing files, empty split)."""


def build_video_index(data: DataConfig, subset: str, use_cache: bool = True) -> VideoIndex:
    """The index of one subset; fails when more than ``max_missing_fraction`` of it is absent.

    With ``use_cache`` and a valid cache written by ``ssvrl data check`` for the same backend
    (:mod:`ssvrl.data.index_cache`), the cached index is used: no per-file existence checks, and
    the files the check found unreadable are left out up front (logged with their count).
    """
    cached = load_cached_index(data, subset) if use_cache else None
    if cached is not None and cached.backend == data.backend:
        index = cached.index
        log.info(
            "%s index from the `ssvrl data check` cache of %s: %d videos, %d known-unreadable "
            "left out",
            subset,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(cached.created)),
            len(index),
            len(cached.bad),
        )
        if cached.bad:
            log.warning(
                "%d %s videos left out as unreadable by `ssvrl data check` (first: %s: %s)",
                len(cached.bad),
                subset,
                cached.bad[0][0],
                cached.bad[0][2],
            )
    else:
        index = _fresh_index(data, subset)
    return _check_missing(index, data, subset)


def _fresh_index(data: DataConfig, subset: str) -> VideoIndex:
    root = Path(data.root)
    return build_index(
        data.format,
        root,
        subset,  # type: ignore[arg-type]
        annotations=Path(data.annotations) if data.annotations else None,
        split=data.split,
        train_list=Path(data.train_list) if data.train_list else None,
        test_list=Path(data.test_list) if data.test_list else None,
        test_fraction=data.test_fraction,
    )


def _check_missing(index: VideoIndex, data: DataConfig, subset: str) -> VideoIndex:
    """Warn about listed-but-absent files; fail past ``data.max_missing_fraction``."""
    root = Path(data.root)
    listed = len(index) + len(index.missing)
    if index.missing:
        log.warning(
            "%d of %d %s videos listed in the annotations are missing under %s (first: %s)",
            len(index.missing),
            listed,
            subset,
            root,
            index.missing[0],
        )
    if len(index) == 0 or len(index.missing) > data.max_missing_fraction * listed:
        raise DataError(
            f"{len(index.missing)} of {listed} {subset} videos are missing under {root}; "
            f"check data.root (it must be the folder holding the class folders)"
        )
    return index


def decode_config(data: DataConfig) -> DecodeConfig:
    """The decoding settings of ``data`` (:class:`ssvrl.data.decoding.DecodeConfig`)."""
    return DecodeConfig(
        backend=data.backend,
        short_side=data.short_side,
        max_retries=data.max_retries,
        timeout=data.decode_timeout,
        sample_by=data.sample_by,
        repeats=data.repeats,
        frame_fps=data.frame_fps,
        frame_template=data.frame_template,
        flow=data.motion_source == "flow",
        flow_bound=data.flow_bound,
    )
