"""Killed runs resume exactly; SIGTERM stops a run cleanly with a checkpoint (real processes).

One process: a run SIGKILLed mid-step is resumed (``--resume auto``) from its last step
checkpoint (one subprocess for both: the killed run is a forked child); that run gets SIGTERM
(sent to its whole process group, DataLoader worker included) mid-epoch and must exit with
code 143 within a timeout, printing one line with the checkpoint and the command to resume;
that command, run here, ends bit for bit where an uninterrupted run ends (MoCo: key encoder
and queue included).

In this process: a SIGTERM while the run is being built stops it before training; in a sweep
child, SIGTERM during fit is fit's to handle and the run is recorded ``interrupted``. Two
processes: test_preemption_ddp.py.
"""

from __future__ import annotations

import os
import shlex
import signal
from pathlib import Path

import pytest

from ssvrl.cli import load_experiment, main
from ssvrl.engine.preemption import Preempted, StopFlag, catch_sigterm
from ssvrl.sweep.execute import RunContext, execute_run
from ssvrl.sweep.plan import make_plan
from ssvrl.sweep.status import read_status
from tests.resume_utils import (
    LINE,
    STOP_S,
    assert_same_training_state,
    fault_command,
    load,
    one_thread,
    overrides,
    subprocess_env,
    terminate_when_marked,
    write_config,
    write_tiny_data,
)
from tests.sweep_utils import write_sweep


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("preempt_data"))


def test_one_process_sigkill_then_sigterm_then_exact_resume(tiny_data: Path,
                                                            tmp_path: Path) -> None:
    config = write_config(tmp_path)
    args = overrides(tiny_data, tmp_path, "moco", "data.num_workers=1", "trainer.max_epochs=3",
                     "trainer.checkpoint_every_n_steps=2")  # fmt: skip
    runs = tmp_path / "run"
    # 1. A run SIGKILLed in the middle of step 5 (in a forked child of the subprocess), then
    # 2. its resume (``--resume auto``: the step-4 checkpoint), sent SIGTERM mid-epoch (step 9
    #    of 18, epoch 1) to its whole process group, DataLoader worker included.
    env = {**subprocess_env(), "FAULT_FORK_KILL": "5", "FAULT_MARK_AT": "9",
           "FAULT_MARKER": str(tmp_path / "mark")}  # fmt: skip
    code, out, seconds = terminate_when_marked(fault_command(config, args), env,
                                                tmp_path / "mark")  # fmt: skip
    assert "fault: child killed by signal 9" in out, out[-3000:]
    assert load(runs / "version_0" / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert code == 143 and seconds < STOP_S, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    found = LINE.findall(out)
    assert len(found) == 1, out[-3000:]
    step, epoch, ckpt, again = int(found[0][0]), int(found[0][1]), Path(found[0][2]), found[0][3]
    assert ckpt == runs / "version_1" / "checkpoints" / "last.ckpt" and 9 < step < 18
    state = load(ckpt)
    assert state["global_step"] == step and state["epoch"] == epoch == step // 6
    progress = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert progress["ready"] == progress["completed"] == step % 6  # at a step boundary
    # 3. The printed command, run here, and an uninterrupted run end bitwise equal.
    words = shlex.split(again)
    assert words[:3] == ["ssvrl", "fit", str(config)] and words[-2:] == ["--resume", str(ckpt)]
    with one_thread():
        assert main(words[1:]) == 0
        from ssvrl.engine.build import fit

        reference = fit(load_experiment(str(config), [*args, "name=reference"]))
    assert_same_training_state(reference / "checkpoints" / "last.ckpt",
                               runs / "version_2" / "checkpoints" / "last.ckpt")  # fmt: skip


# ------------------------------------------------------------- inside a sweep (in process)
def test_a_sweep_run_stopped_by_sigterm_during_fit_is_interrupted(tmp_path: Path) -> None:
    """In a sweep child, SIGTERM during ``fit`` reaches fit's handler, not the sweep's
    (which would raise at once, without a checkpoint); the ``Preempted`` that follows the
    checkpoint is recorded as ``interrupted``, so the next sweep run resumes it."""
    plan = make_plan(write_sweep(tmp_path, grid={"objective.temperature": [0.1]}))
    ckpt = tmp_path / "last.ckpt"

    def preempted(ctx: RunContext) -> dict[str, object]:
        with catch_sigterm(StopFlag()) as flag:  # as fit() does around training
            os.kill(os.getpid(), signal.SIGTERM)
            assert flag.requested  # remembered, not raised
            raise Preempted(ckpt, 7, 1)  # what fit raises after the checkpoint

    assert execute_run(plan, 0, preempted) == 130
    status = read_status(plan.folder(plan.runs[0]))
    assert status["state"] == "interrupted"
    assert status["error"] == f"stopped by SIGTERM at step 7 (epoch 1); checkpoint {ckpt}"

    def finished_late(ctx: RunContext) -> dict[str, object]:
        with catch_sigterm(StopFlag()):  # SIGTERM in the last step: training completes ...
            os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not reached: ... then the sweep's handler gets the signal")

    assert execute_run(plan, 0, finished_late) == 130
    assert read_status(plan.folder(plan.runs[0]))["error"] == "stopped by SIGTERM"


def test_sigterm_while_the_run_is_built_stops_before_training(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM before the first step (here while the data and model are built) is kept
    and honoured before training starts: no step, no checkpoint, no exit by signal."""
    from ssvrl.engine import build

    make = build.build_pretrain

    def signalled(*args: object) -> build.PretrainParts:
        parts = make(*args)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)
        return parts

    monkeypatch.setattr(build, "build_pretrain", signalled)
    cfg = load_experiment(str(write_config(tmp_path)), overrides(tiny_data, tmp_path, "cvrl"))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted, match="before training started") as stop:
        build.fit(cfg)
    assert stop.value.step is None and stop.value.checkpoint is None
    assert not list(tmp_path.glob("run/version_*/checkpoints/*.ckpt"))
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
