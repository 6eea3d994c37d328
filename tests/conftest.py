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
