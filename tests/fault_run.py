"""``python tests/fault_run.py fit CONFIG ...``: ``ssvrl`` with faults at chosen optimizer steps.

Used by the resume / preemption tests as the process to kill (directly or under ``torchrun``).
The config is untouched (a resume compares configs); faults come from the environment, through
one extra callback appended to the trainer ``ssvrl.engine.build.build_trainer`` makes:

- ``FAULT_KILL_AT=K``: SIGKILL this process in the middle of step K (after its optimizer
  step, before the module's own end-of-step work such as MoCo's queue update);
- ``FAULT_MARK_AT=S`` + ``FAULT_MARKER=path``: at the start of step S write ``path.<rank>``
  (this process's pid), then sleep ``FAULT_SLOW_S`` seconds per step, so the test can signal
  the run while it is mid-epoch;
- ``FAULT_KEEP=1``: copy every step checkpoint ``last.ckpt`` to ``step<N>.ckpt`` (rank 0);
- ``FAULT_REFERENCE=NAME``: first run the same command uninterrupted with ``name=NAME`` (no
  faults, FAULT_KEEP on; with ``--resume PATH``, an uninterrupted resume), then the faulty
  one: a reference from the same processes, which saves a separate ``torchrun`` launch;
- ``FAULT_RESUME=1``: when the faulty run stopped on SIGTERM (exit code 143), resume it here
  without faults (``--resume auto``) and exit with that run's code;
- ``FAULT_FORK_KILL=K``: first run the command in a forked child (it shares this process's
  imports, which saves a process start) that is SIGKILLed in the middle of step K; report
  ``fault: child killed by signal N`` and go on with ``--resume auto`` (faults armed).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from ssvrl.cli import main
from ssvrl.engine import build
from ssvrl.engine.step_checkpoint import StepCheckpoint

ARMED = {"on": True}


class Fault(pl.Callback):
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:  # fmt: skip
        mark = os.environ.get("FAULT_MARK_AT")
        if ARMED["on"] and mark and trainer.global_step == int(mark):
            path = Path(f"{os.environ['FAULT_MARKER']}.{trainer.global_rank}")
            path.write_text(str(os.getpid()))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if not ARMED["on"]:
            return
        kill = os.environ.get("FAULT_KILL_AT")
        if kill and trainer.global_step == int(kill):
            os.kill(os.getpid(), signal.SIGKILL)
        mark = os.environ.get("FAULT_MARK_AT")
        if mark and trainer.global_step > int(mark):
            time.sleep(float(os.environ.get("FAULT_SLOW_S", "0.5")))


def _with_fault(make: Any) -> Any:
    def build_trainer(*args: Any, **kwargs: Any) -> pl.Trainer:
        trainer = make(*args, **kwargs)
        trainer.callbacks.append(Fault())
        return trainer

    return build_trainer


def _keeping(save: Any) -> Any:
    def keep(self: StepCheckpoint, trainer: pl.Trainer) -> None:
        save(self, trainer)
        if (not ARMED["on"] or os.environ.get("FAULT_KEEP")) and trainer.is_global_zero:
            shutil.copy(self.path, self.path.with_name(f"step{trainer.global_step}.ckpt"))

    return keep


def _named(argv: list[str], name: str) -> list[str]:
    """``argv`` with the override ``name=NAME`` after the others (the last one wins), before
    the options such as ``--resume PATH`` (argparse takes no overrides after them)."""
    at = next((i for i, word in enumerate(argv) if word.startswith("--")), len(argv))
    return [*argv[:at], f"name={name}", *argv[at:]]


if __name__ == "__main__":
    build.build_trainer = _with_fault(build.build_trainer)  # type: ignore[assignment]
    StepCheckpoint.save = _keeping(StepCheckpoint.save)  # type: ignore[method-assign]
    argv = sys.argv[1:]
    fork_kill = os.environ.get("FAULT_FORK_KILL")
    if fork_kill:
        child = os.fork()
        if child == 0:  # the run to be killed; never returns
            os.environ["FAULT_KILL_AT"] = fork_kill
            os._exit(main(argv))
        _, status = os.waitpid(child, 0)
        print(f"fault: child killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
              else f"fault: child exited with {os.WEXITSTATUS(status)}", file=sys.stderr)
        argv = [*argv, "--resume", "auto"]
    reference = os.environ.get("FAULT_REFERENCE")
    if reference:
        ARMED["on"] = False
        code = main(_named(argv, reference))
        if code:
            sys.exit(code)
        ARMED["on"] = True
    code = main(argv)
    if code == 143 and os.environ.get("FAULT_RESUME"):
        ARMED["on"] = False
        code = main([*argv, "--resume", "auto"])
    sys.exit(code)
