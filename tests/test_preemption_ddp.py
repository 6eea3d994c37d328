"""Faults under ``torchrun --nproc_per_node=2`` (gloo, CPU): SIGKILL of the whole launch
mid-epoch loses only the steps after the last step checkpoint, and SIGTERM to one rank stops
both at the same step boundary with one checkpoint; either resume continues bit for bit.

Before, Lightning's SIGTERM handler ran a ``broadcast`` inside the signal handler: unmatched on
the other rank, the ranks deadlocked until ``torchrun`` SIGKILLed them (no checkpoint). Here
only rank 1 gets the signal, the hardest case for agreement: rank 0 must learn of it through
the per-step all-reduce. Starting ``torchrun`` and importing torch + Lightning in two ranks
costs ~25 s on 2 cores, so two launches hold five runs (module fixture): launch 1, the
uninterrupted run (``reference``, every step checkpoint kept) and the run SIGKILLed in step 4
or 5 together with ``torchrun``; launch 2, from that run's checkpoint, an uninterrupted resume
(``resumed``) and a resume whose rank 1 gets SIGTERM at step 6, then ``--resume auto``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dist_utils import free_port
from tests.resume_utils import (
    LINE,
    TIMEOUT,
    assert_same_snapshot,
    assert_same_training_state,
    fault_command,
    kill_all_when_marked,
    load,
    overrides,
    subprocess_env,
    terminate_when_marked,
    write_config,
    write_tiny_data,
)

STEPS_PER_EPOCH = 3  # 12 videos, batch 2 per rank, 2 ranks


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("preempt_ddp_data"))


def ddp_args(data: Path, out: Path) -> list[str]:
    return overrides(data, out, "moco", "trainer.devices=2", "trainer.strategy=ddp",
                     "trainer.max_epochs=3", "trainer.checkpoint_every_n_steps=1")  # fmt: skip


@dataclass
class Launches:
    folder: Path
    killed_log: str  # launch 1 (reference, then the SIGKILLed run)
    code: int  # launch 2 (resumed, the SIGTERMed resume, its resume)
    out: str


@pytest.fixture(scope="module")
def launches(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Launches:
    folder = tmp_path_factory.mktemp("preempt_ddp_runs")
    config, args = write_config(folder), ddp_args(tiny_data, folder)
    env = {**subprocess_env(), "FAULT_REFERENCE": "reference", "FAULT_MARK_AT": "4",
           "FAULT_MARKER": str(folder / "kill"), "FAULT_SLOW_S": "1"}  # fmt: skip
    cmd = fault_command(config, args, nproc=2, port=free_port())
    kill_all_when_marked(cmd, env, folder / "kill", ranks=2, log=folder / "kill.log")
    killed = folder / "run" / "version_0" / "checkpoints" / "last.ckpt"
    env = {**subprocess_env(), "FAULT_REFERENCE": "resumed", "FAULT_RESUME": "1",
           "FAULT_MARK_AT": "6", "FAULT_MARKER": str(folder / "term"), "FAULT_SLOW_S": "1"}
    cmd = fault_command(config, [*args, "--resume", str(killed)], nproc=2, port=free_port())
    code, out, _ = terminate_when_marked(cmd, env, folder / "term", rank=1, wait_s=TIMEOUT)
    return Launches(folder, (folder / "kill.log").read_text(), code, out)


def test_sigkill_of_the_whole_launch_mid_epoch_resumes_exactly(launches: Launches) -> None:
    """``torchrun`` and both ranks SIGKILLed in the middle of step 4 or 5 (epoch 1): nothing
    runs at exit, so the run keeps only its last step checkpoint; a resume from it under
    ``torchrun`` ends bitwise where the uninterrupted two-process run ends."""
    assert "ssvrl: stopped" not in launches.killed_log, launches.killed_log[-3000:]
    assert launches.code == 0, launches.out[-4000:]  # launch 2 finished
    reference = launches.folder / "reference" / "version_0" / "checkpoints"
    killed = launches.folder / "run" / "version_0" / "checkpoints" / "last.ckpt"
    state = load(killed)
    step = state["global_step"]
    assert step in (4, 5) and state["epoch"] == 1, step  # the markers came after step 4's save
    progress = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert progress["ready"] == progress["completed"] == step % STEPS_PER_EPOCH  # mid-epoch
    assert_same_snapshot(reference / f"step{step}.ckpt", killed)  # incl. both ranks' RNG
    resumed = launches.folder / "resumed" / "version_0" / "checkpoints"
    assert_same_snapshot(reference / "step8.ckpt", resumed / "step8.ckpt")
    assert load(resumed / "last.ckpt")["global_step"] == 3 * STEPS_PER_EPOCH
    assert_same_training_state(reference / "last.ckpt", resumed / "last.ckpt")


def test_sigterm_to_one_rank_stops_both_and_resumes_exactly(launches: Launches) -> None:
    code, out, folder = launches.code, launches.out, launches.folder
    assert code == 0, out[-4000:]  # the resumed run finished
    found = LINE.findall(out)
    assert len(found) == 1, out[-4000:]  # both ranks stopped (exit 143); rank 0 said so once
    step, ckpt, again = int(found[0][0]), Path(found[0][2]), found[0][3]
    assert again.startswith("torchrun --nproc_per_node=2 -m ssvrl fit ")
    runs, reference = folder / "run", folder / "reference" / "version_0" / "checkpoints"
    assert ckpt == runs / "version_1" / "checkpoints" / "last.ckpt" and 6 < step < 9
    assert_same_snapshot(reference / f"step{step}.ckpt", ckpt)  # incl. both ranks' RNG
    assert_same_training_state(reference / "last.ckpt",
                               runs / "version_2" / "checkpoints" / "last.ckpt")  # fmt: skip
