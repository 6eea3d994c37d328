"""Atomic checkpoint writes: a process SIGKILLed half-way through writing ``last.ckpt`` leaves
the previous ``last.ckpt`` loadable; a write that fails half-way leaves it untouched; the
trainer ``ssvrl fit`` builds writes through :class:`AtomicCheckpointIO`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from ssvrl.utils.atomic_save import atomic_torch_save, partial_path
from tests.resume_utils import ROOT, subprocess_env

# The child saves step 1 completely, then dies by SIGKILL after writing half of step 2's bytes
# (its file handle kills the process once that many bytes went through it).
CHILD = """
import os, signal, sys, torch
import ssvrl.utils.atomic_save as atomic
path, size = sys.argv[1], int(sys.argv[2])
atomic.atomic_torch_save({"step": 1, "x": torch.full((size,), 1.0)}, path)
real_open = open
class Dying:
    def __init__(self, *args):
        self.f, self.n = real_open(*args), 0
    def write(self, data):
        room = size * 2 - self.n  # die after half of the tensor's 4 * size bytes
        if 0 <= room < len(data):
            self.f.write(bytes(memoryview(data)[:room]))
            self.f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self.n += len(data)
        return self.f.write(data)
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
atomic.open = Dying
atomic.atomic_torch_save({"step": 2, "x": torch.full((size,), 2.0)}, path)
print("not reached")
"""


def test_sigkill_during_a_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    size = 4_000_000  # 16 MB of float32
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(target), str(size)],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = partial_path(target)
    assert partial.is_file() and partial.stat().st_size >= 2 * size  # died mid-write
    saved = torch.load(target, weights_only=True)  # the previous, complete checkpoint
    assert saved["step"] == 1 and torch.equal(saved["x"], torch.full((size,), 1.0))
    atomic_torch_save({"step": 3}, target)  # the next save replaces the leftover
    assert torch.load(target, weights_only=True) == {"step": 3} and not partial.exists()


def test_a_failed_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssvrl.engine.checkpoint_io import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.arange(5)}, target)

    def half_then_fail(obj: Any, handle: Any) -> None:
        handle.write(b"PK\x03\x04 half a zip archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": 2, "w": torch.arange(6)}, target)
    monkeypatch.undo()
    saved = io.load_checkpoint(target, weights_only=True)
    assert saved["step"] == 1 and torch.equal(saved["w"], torch.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no partial left


def test_the_fit_trainer_writes_atomically(tmp_path: Path) -> None:
    from ssvrl.cli import load_experiment
    from ssvrl.data.bad_videos import BadVideoLog
    from ssvrl.engine.build import build_trainer
    from ssvrl.engine.checkpoint_io import AtomicCheckpointIO

    cfg = load_experiment(None, [f"out_dir={tmp_path}", "trainer.accelerator=cpu"])
    run_dir = tmp_path / "run"
    trainer = build_trainer(cfg, run_dir, BadVideoLog(run_dir / "bad", 1, 1.0))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
