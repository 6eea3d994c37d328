"""SIGTERM (a scheduler's preemption) stops a run cleanly: checkpoint at a step boundary, exit.

Why Lightning 2.6's own handling is replaced (``pytorch_lightning.trainer.connectors.
signal_connector._SignalConnector`` and the checks in ``training_epoch_loop.py``):

- its handler calls ``torch.distributed.broadcast`` *inside the signal handler*. Under
  ``torchrun`` every rank gets SIGTERM at a different point of its step; the extra broadcast is
  matched against whatever collective the other rank is in (or waits for one that never comes),
  so the ranks deadlock until ``torchrun`` SIGKILLs them 30 s later: "SIGTERM does not stop
  ``ssvrl fit``, only kill -9 does" (reproduced with 2 gloo ranks);
- ``on_advance_end`` then raises ``SIGTERMException`` on each rank that saw the signal, without
  agreeing with the others, and without a checkpoint;
- ``SIGTERMException`` is a ``SystemExit`` without a code, so a single process stopped by
  SIGTERM exited with status 0, as if training had finished;
- DataLoader workers were killed by the same signal (``torchrun`` signals the process group),
  which crashes the main process mid-step (``ssvrl.data.datamodule.worker_init``).

Here the handler only sets a flag (:class:`StopFlag`; Lightning's connector is replaced by
``ssvrl.engine.step_checkpoint.PreemptionSignalConnector``). At the next step boundary
(``on_train_batch_start``, :class:`ssvrl.engine.step_checkpoint.StepCheckpoint`) the ranks
agree with one all-reduce (any rank's flag stops all), every rank joins writing ``last.ckpt``,
and :class:`Preempted` is raised; ``ssvrl fit`` turns it into one line and exit code
:data:`EXIT_PREEMPTED`. A second SIGTERM kills the process at once (the default action), as
an escape hatch when a step hangs. This module does not import Lightning (the sweep's
bookkeeping imports :class:`Preempted`).
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

__all__ = ["EXIT_PREEMPTED", "Preempted", "StopFlag", "catch_sigterm", "resume_command"]

EXIT_PREEMPTED = 143  # 128 + SIGTERM: what a shell reports for a process ended by SIGTERM


class Preempted(Exception):  # noqa: N818  (an outcome, not an error)
    """The run stopped on SIGTERM: at ``step`` (of ``epoch``) with its state in
    ``checkpoint``, or before training started (``step`` None; ``checkpoint`` is then the one
    the run was resuming, if any)."""

    def __init__(self, checkpoint: Path | None, step: int | None, epoch: int | None) -> None:
        self.checkpoint, self.step, self.epoch = checkpoint, step, epoch
        if step is None:
            text = "stopped by SIGTERM before training started"
        else:
            text = f"stopped by SIGTERM at step {step} (epoch {epoch}); checkpoint {checkpoint}"
        super().__init__(text)


class StopFlag:
    """Set by SIGTERM (in the main thread, between bytecodes); read at step boundaries."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second SIGTERM: die now, as without this handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.requested = True  # nothing else here: no I/O, no collectives in a handler


@contextmanager
def catch_sigterm(flag: StopFlag) -> Iterator[StopFlag]:
    """SIGTERM sets ``flag`` while inside (restoring the previous handler after), so a signal
    that comes while the run is still being built is honoured at its first step.

    A SIGTERM that came too late to stop anything (during the last step) is passed on to the
    previous handler when that is a Python function (a sweep's, which then stops the sweep);
    with the default action the finished run simply exits normally."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    old = signal.signal(signal.SIGTERM, flag.handler)
    try:
        yield flag
    except BaseException:
        signal.signal(signal.SIGTERM, old)
        raise
    signal.signal(signal.SIGTERM, old)
    if flag.requested and callable(old):
        old(signal.SIGTERM, None)


def resume_command(config: str, overrides: Sequence[str], checkpoint: Path | None) -> str:
    """The command line that continues from ``checkpoint`` (None: starts afresh): ``ssvrl
    fit`` with the same config and overrides, under ``torchrun`` with the same processes per
    node when launched by it (a multi-node job also needs its rendezvous options, which a
    process cannot see)."""
    words = ["ssvrl", "fit", config, *overrides]
    words += ["--resume", str(checkpoint)] if checkpoint is not None else []
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        per_node = os.environ.get("LOCAL_WORLD_SIZE", "1")
        words = ["torchrun", f"--nproc_per_node={per_node}", "-m", "ssvrl", *words[1:]]
    text = " ".join(shlex.quote(w) for w in words)
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1") or 1)
    return text + (" (plus your rendezvous options)" if nodes > 1 else "")
