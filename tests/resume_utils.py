"""Helpers of the resume / preemption tests: a tiny synthetic dataset, tiny configs per
objective, runs in this process or in a subprocess, and a bitwise comparison of checkpoints."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "experiments" / "_base"
TIMEOUT = 240  # s for a whole subprocess run: importing torch + Lightning on 2 busy cores
STOP_S = 60  # s from SIGTERM to exit: one step, a checkpoint, teardown
LINE = re.compile(
    r"^ssvrl: stopped by SIGTERM at step (\d+) \(epoch (\d+)\); checkpoint (\S+); "
    r"to resume: (.+)$", re.M
)

# 12 training videos of 24 frames: 6 steps per epoch with batch 2 (3 per rank with 2 ranks).
OBJECTIVES = {
    "cvrl": ["objective.name=cvrl", "objective.frames=4", "objective.proj_hidden=16",
             "objective.proj_dim=8"],
    "moco": ["objective.name=moco", "objective.frames=4", "objective.proj_hidden=16",
             "objective.proj_dim=8", "objective.queue_size=6", "objective.momentum=0.9"],
    # TEG draws its short-clip offsets from the global torch RNG every step
    "teg": ["objective.name=teg", "objective.long_frames=8", "objective.long_stride=1",
            "objective.short_frames=4", "objective.proj_hidden=16", "objective.proj_dim=8"],
}  # fmt: skip


def write_tiny_data(out: Path) -> Path:
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    spec = SynthSpec(num_classes=2, groups=4, clips_per_group=2, frames=24, seed=5)
    write_synthetic_dataset(out, spec, workers=1)
    return out


def write_config(folder: Path) -> Path:
    """The config file every run of a test uses (overrides are on the command line)."""
    config = folder / "tiny.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(f"inherit: [{BASE / 'synthetic.yaml'}, {BASE / 'cpu.yaml'}]\n")
    return config


def overrides(data: Path, out: Path, objective: str, *extra: str) -> list[str]:
    return [
        f"data.root={data / 'videos'}", f"data.annotations={data / 'annotations'}",
        f"out_dir={out}", "name=run", "backbone.name=small3d", "backbone.width=4",
        *OBJECTIVES[objective], "objective.augment.crop_size=32", "data.batch_size=2",
        "data.num_workers=0", "trainer.accelerator=cpu", "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1", "trainer.progress_bar=false", *extra,
    ]  # fmt: skip


@contextmanager
def one_thread() -> Iterator[None]:
    """Runs here use one intra-op thread, as the subprocesses (OMP_NUM_THREADS=1): float
    reductions may group differently with another thread count, and results are compared
    bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def fault_command(config: Path, args: list[str], nproc: int = 1, port: int = 0) -> list[str]:
    """``tests/fault_run.py fit CONFIG ARGS``, under ``torchrun`` when ``nproc > 1``."""
    script = [str(ROOT / "tests" / "fault_run.py"), "fit", str(config), *args]
    if nproc == 1:
        return [sys.executable, *script]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            f"--master_port={port}", *script]  # fmt: skip


def keep_step_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copy every step checkpoint to ``step<N>.ckpt`` beside ``last.ckpt`` (this process)."""
    from ssvrl.engine.step_checkpoint import StepCheckpoint

    save = StepCheckpoint.save

    def keep(self: StepCheckpoint, trainer: Any) -> None:
        save(self, trainer)
        shutil.copy(self.path, self.path.with_name(f"step{trainer.global_step}.ckpt"))

    monkeypatch.setattr(StepCheckpoint, "save", keep)


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training_state(a: Path, b: Path) -> None:
    """Every tensor of the model (backbone, heads, teachers, queues, centres) and of the
    optimizer, the schedulers and the step count are bitwise equal in checkpoints ``a``, ``b``."""
    x, y = load(a), load(b)
    assert x["global_step"] == y["global_step"], (x["global_step"], y["global_step"])
    sx, sy = x["state_dict"], y["state_dict"]
    assert sorted(sx) == sorted(sy)
    differ = [k for k in sx if not torch.equal(sx[k], sy[k])]
    assert not differ, f"{len(differ)} of {len(sx)} tensors differ, e.g. {differ[:4]}"
    _same_tree(x["optimizer_states"], y["optimizer_states"], "optimizer")
    assert x["lr_schedulers"] == y["lr_schedulers"]


def assert_same_snapshot(a: Path, b: Path) -> None:
    """:func:`assert_same_training_state` plus the RNG states of every rank and the data
    position: two checkpoints of the same step boundary hold the same complete state."""
    assert_same_training_state(a, b)
    x, y = load(a), load(b)
    assert x["PretrainDataModule"] == y["PretrainDataModule"]
    _same_tree(x["callbacks"]["RngState"], y["callbacks"]["RngState"], "rng")


def _same_tree(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert sorted(a, key=str) == sorted(b, key=str), where
        for k in a:
            _same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _same_tree(u, v, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def terminate_when_marked(cmd: list[str], env: dict[str, str], marker: Path,
                           rank: int | None = None, wait_s: float = STOP_S
                           ) -> tuple[int, str, float]:  # fmt: skip
    """Start ``cmd`` in its own session; once rank 0 wrote ``marker.0`` (mid-epoch), SIGTERM
    its whole process group, or only the process of ``rank`` (its pid is in ``marker.rank``);
    returns the exit code, the output and the seconds from SIGTERM to exit. Output goes to a
    file (a full pipe would block the run before it gets to the marker)."""
    log = marker.with_name(marker.name + ".log")
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + TIMEOUT
        mark = Path(f"{marker}.{rank or 0}")
        while not mark.exists() or not mark.read_text():
            assert proc.poll() is None, f"ended before the marker: {log.read_text()[-3000:]}"
            assert time.time() < deadline, f"no marker in {TIMEOUT} s: {log.read_text()[-3000:]}"
            time.sleep(0.05)
        if rank is None:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            os.kill(int(mark.read_text()), signal.SIGTERM)
        sent = time.time()
        proc.wait(timeout=wait_s)
        return proc.returncode, log.read_text(), time.time() - sent
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run did not end within {wait_s} s of SIGTERM: {log.read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def kill_all_when_marked(cmd: list[str], env: dict[str, str], marker: Path, ranks: int,
                         log: Path) -> None:  # fmt: skip
    """Start ``torchrun`` ``cmd``; once every rank wrote ``marker.<rank>`` (its pid, mid-epoch),
    SIGKILL ``torchrun`` first (so it cannot react to a dead worker) and then each rank's
    process group: ``torchrun`` starts every worker in a session of its own
    (``start_new_session`` in torch.distributed.elastic's ``SubprocessHandler``), so a signal
    to ``torchrun``'s group alone would leave the ranks running, unlike a node that dies."""
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    marks = [Path(f"{marker}.{rank}") for rank in range(ranks)]
    try:
        deadline = time.time() + TIMEOUT
        while not all(m.exists() and m.read_text() for m in marks):
            assert proc.poll() is None, f"ended before the markers: {log.read_text()[-3000:]}"
            assert time.time() < deadline, f"no markers in {TIMEOUT} s: {log.read_text()[-3000:]}"
            time.sleep(0.05)
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)  # torchrun then stops its workers
        proc.wait(timeout=STOP_S)
        raise
    pids = [int(m.read_text()) for m in marks]
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # a worker leads its session: pgid == pid
    proc.wait()
    deadline = time.time() + STOP_S  # the ranks are not our children: wait until gone (or zombie)
    while any(_alive(pid) for pid in pids):
        assert time.time() < deadline, f"ranks {pids} still alive {STOP_S} s after SIGKILL"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
