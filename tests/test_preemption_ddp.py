"""SIGTERM under ``torchrun --nproc_per_node=2`` (gloo, CPU): one rank's signal stops both at
the same step boundary with one checkpoint, which a resume continues bit for bit.

Before, Lightning's SIGTERM handler ran a ``broadcast`` inside the signal handler: unmatched on
the other rank, the ranks deadlocked until ``torchrun`` SIGKILLed them (no checkpoint). Here
only rank 1 gets the signal, the hardest case for agreement: rank 0 must learn of it through
the per-step all-reduce. One ``torchrun`` launch holds three runs in the same two processes:
the uninterrupted one (every step checkpoint kept), the one stopped by SIGTERM, and its resume.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dist_utils import free_port
from tests.resume_utils import (
    LINE,
    TIMEOUT,
    assert_same_snapshot,
    assert_same_training_state,
    fault_command,
    overrides,
    subprocess_env,
    terminate_when_marked,
    write_config,
    write_tiny_data,
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("preempt_ddp_data"))


def test_sigterm_to_one_rank_stops_both_and_resumes_exactly(tiny_data: Path,
                                                             tmp_path: Path) -> None:
    config = write_config(tmp_path)
    args = overrides(tiny_data, tmp_path, "moco", "trainer.devices=2", "trainer.strategy=ddp",
                     "trainer.max_epochs=3", "trainer.checkpoint_every_n_steps=1")  # fmt: skip
    env = {**subprocess_env(), "FAULT_REFERENCE": "reference", "FAULT_RESUME": "1",
           "FAULT_MARK_AT": "4", "FAULT_MARKER": str(tmp_path / "mark"), "FAULT_SLOW_S": "1"}
    cmd = fault_command(config, args, nproc=2, port=free_port())
    code, out, _ = terminate_when_marked(cmd, env, tmp_path / "mark", rank=1, wait_s=TIMEOUT)
    assert code == 0, out[-4000:]  # the resumed run finished
    found = LINE.findall(out)
    assert len(found) == 1, out[-4000:]  # both ranks stopped (exit 143); rank 0 said so once
    step, ckpt, again = int(found[0][0]), Path(found[0][2]), found[0][3]
    assert again.startswith("torchrun --nproc_per_node=2 -m ssvrl fit ")
    runs, reference = tmp_path / "run", tmp_path / "reference" / "version_0" / "checkpoints"
    assert ckpt == runs / "version_0" / "checkpoints" / "last.ckpt" and 4 <= step < 9
    assert_same_snapshot(reference / f"step{step}.ckpt", ckpt)  # incl. both ranks' RNG
    assert_same_training_state(reference / "last.ckpt",
                               runs / "version_1" / "checkpoints" / "last.ckpt")  # fmt: skip
