"""Run a sweep's runs as child processes, one after another or ``parallel`` at a time.

Each run is ``python -m ssvrl sweep FILE --run-index I`` with its output in the run's
``log.txt``; with GPUs, each of the ``parallel`` slots sees one of them through
``CUDA_VISIBLE_DEVICES``; on CPU, the slots share the cores (``OMP_NUM_THREADS``). A child that
dies without reporting (SIGKILL, segfault) is marked failed with the tail of its log. Done runs
are skipped, so running the same command again resumes the sweep.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Protocol

from ssvrl.sweep.execute import RunFn, execute_run
from ssvrl.sweep.expand import Run
from ssvrl.sweep.plan import Plan
from ssvrl.sweep.status import (
    alive_here,
    effective_state,
    now_iso,
    read_status,
    write_status,
)

__all__ = ["Launcher", "inline_launcher", "run_sweep", "slot_envs", "subprocess_launcher"]

LOG_TAIL = 40  # lines of log.txt copied to error.txt when a child dies without a word
GRACE_S = 20.0  # after Ctrl-C: how long children get to stop before they are killed


class Proc(Protocol):
    """The part of :class:`subprocess.Popen` the runner uses."""

    pid: int

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


Launcher = Callable[[Run, Path, dict[str, str]], Proc]  # run, its folder, extra environment


def subprocess_launcher(sweep_file: Path) -> Launcher:
    """Start ``python -m ssvrl sweep FILE --run-index I``, output appended to ``log.txt``."""
    def launch(run: Run, folder: Path, env: dict[str, str]) -> Proc:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "ssvrl", "sweep", str(sweep_file),
               "--run-index", str(run.index)]
        with (folder / "log.txt").open("ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **env})
    return launch


class _Finished:
    """A run already over when it is returned (:func:`inline_launcher`)."""

    def __init__(self, code: int) -> None:
        self.pid, self.code = os.getpid(), code

    def poll(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        """Nothing left to stop."""

    def kill(self) -> None:
        """Nothing left to stop."""


def inline_launcher(plan: Plan, run_fn: RunFn | None = None) -> Launcher:
    """Run each run in this process (no crash isolation): for tests and debugging."""
    return lambda run, folder, env: _Finished(execute_run(plan, run.index, run_fn))


def visible_gpus() -> list[str]:
    """The GPU ids children may use: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001  (no usable CUDA: run on CPU)
        return []


def slot_envs(parallel: int, gpus: list[str], cpus: int | None = None) -> list[dict[str, str]]:
    """The environment of each slot: one GPU each (round-robin), or a share of the cores."""
    if parallel <= 1:
        return [{}]
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} for i in range(parallel)]
    threads = str(max(1, (cpus or os.cpu_count() or 1) // parallel))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}] * parallel


def run_sweep(
    plan: Plan,
    parallel: int = 1,
    launcher: Launcher | None = None,
    gpus: list[str] | None = None,
    poll_s: float = 0.5,
    echo: Callable[[str], None] = print,
) -> int:
    """Run every run that is not done; 0 when all are done, 1 when any failed, 130 on Ctrl-C."""
    launch = launcher or subprocess_launcher(plan.spec.path)
    envs = slot_envs(parallel, visible_gpus() if gpus is None else gpus)
    board = _Board(plan, parallel)
    queue = deque(board.todo)
    active: dict[int, tuple[Run, Proc, float]] = {}
    echo(board.line(f"{len(queue)} to run ({board.resumed} interrupted, resumed)"))
    try:
        with _term_as_interrupt():
            while queue or active:
                for slot in [s for s in range(len(envs)) if s not in active][: len(queue)]:
                    run = queue.popleft()
                    echo(f"start {run.name}" + (f" [{envs[slot]}]" if envs[slot] else ""))
                    active[slot] = (run, launch(run, plan.folder(run), envs[slot]), time.time())
                for slot, (run, proc, t0) in list(active.items()):
                    code = proc.poll()
                    if code is not None:
                        del active[slot]
                        state = _settle(plan.folder(run), code)
                        board.finished(run, state, time.time() - t0)
                        echo(board.line(f"{run.name}: {state}", running=len(active)))
                if active:
                    time.sleep(poll_s)
    except KeyboardInterrupt:
        _stop([proc for _, proc, _ in active.values()])
        for run, _, _ in active.values():
            _settle(plan.folder(run), -signal.SIGTERM, "interrupted")
        echo("interrupted: run the same command again to resume")
        return 130
    return board.summary(echo)


class _Board:
    """Counts and the time estimate behind the progress lines."""

    def __init__(self, plan: Plan, parallel: int) -> None:
        self.plan, self.parallel = plan, max(1, parallel)
        self.todo: list[Run] = []
        self.failed: list[tuple[Run, str]] = []  # failed or interrupted
        self.seconds: list[float] = []
        self.done = self.resumed = self.elsewhere = 0
        for run in plan.runs:
            status = read_status(plan.folder(run))
            state = effective_state(status)
            if state == "done":
                self.done += 1
                if isinstance(status.get("seconds"), (int, float)):
                    self.seconds.append(float(status["seconds"]))
            elif state == "running":  # alive, in another process or on another host
                self.elsewhere += 1
            else:
                self.todo.append(run)
                self.resumed += state == "interrupted"
        self.remaining = len(self.todo)

    def finished(self, run: Run, state: str, seconds: float) -> None:
        self.remaining -= 1
        if state == "done":
            self.done += 1
            self.seconds.append(seconds)
        else:
            self.failed.append((run, state))

    def line(self, event: str, running: int = 0) -> str:
        total = len(self.plan.runs)
        eta = "?"
        if self.seconds and self.remaining:
            mean = sum(self.seconds) / len(self.seconds)
            eta = _duration(mean * math.ceil(self.remaining / self.parallel))
        elif not self.remaining:
            eta = "0s"
        return (f"[sweep {self.plan.spec.name}] {event} | {self.done}/{total} done, "
                f"{len(self.failed)} failed, {self.remaining} remaining ({running} running) | "
                f"~{eta} left")

    def summary(self, echo: Callable[[str], None]) -> int:
        if self.elsewhere:
            echo(f"{self.elsewhere} run(s) are running in another process; not started here")
        for run, state in self.failed:
            echo(f"{state.upper()} {run.name}: see {self.plan.folder(run) / 'error.txt'}")
        if self.failed:
            echo(f"{len(self.failed)} of {len(self.plan.runs)} runs failed or were interrupted; "
                 "run the same command again to retry them (from their last checkpoint)")
        return 1 if self.failed else 0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.1f}min" if seconds < 5400 else f"{seconds / 3600:.1f}h"


def _settle(folder: Path, code: int, unreported: str = "failed") -> str:
    """The run's final state; a child that exited without saying gets ``unreported`` here."""
    status = read_status(folder)
    if status.get("state") not in ("running", "pending"):
        return str(status["state"])
    if alive_here(status):  # the child refused: another live process runs it; leave it be
        return "running elsewhere"
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    log = folder / "log.txt"
    tail = log.read_text("utf-8", "replace").splitlines()[-LOG_TAIL:] if log.is_file() else []
    text = f"the run's process ended without reporting ({how}); last lines of log.txt:\n"
    (folder / "error.txt").write_text(text + "\n".join(tail) + "\n", encoding="utf-8")
    write_status(folder, state=unreported, end=now_iso(), end_ts=time.time(), error=how)
    return unreported


def _stop(procs: list[Proc]) -> None:
    """Give children GRACE_S to stop (they saw Ctrl-C too, or get SIGTERM), then kill them."""
    deadline = time.time() + GRACE_S
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.2)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


@contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM to the sweep (a job scheduler's stop) ends it like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
