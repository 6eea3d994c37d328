"""Shared fixtures: the real test videos in ../shared/data and small synthetic datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# torch must be loaded before decord: decord2 3.4's bundled libraries pull in NVBLAS, which takes
# over BLAS calls when it is loaded first and crashes torch's CPU ops (seen: a segfault in
# affine_grid). ssvrl imports decord only inside open_video, after torch; tests do the same.
import torch  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SSVRL_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real MP4/AVI files, official UCF101 splits); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set SSVRL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9 tiny synthetic videos (3 classes x 3 groups, 24 frames) in the UCF101 layout, written
    once per test module (the probe and teacher-encoder tests)."""
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    out = tmp_path_factory.mktemp("tiny")
    write_synthetic_dataset(
        out, SynthSpec(num_classes=3, groups=3, clips_per_group=1, frames=24, seed=1), workers=1
    )
    return out
