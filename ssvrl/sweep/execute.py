"""One run of a sweep, in the current process (``ssvrl sweep FILE --run-index I``).

The runner starts this in a child process per run, so a crash, an out-of-memory kill or a
segfault in one run cannot take the sweep down. The work itself is a :data:`RunFn` (the real
one: :func:`ssvrl.sweep.work.pretrain_and_probe`; tests pass stubs). This module owns the
bookkeeping around it: ``status.json`` before and after, ``results.json``, ``error.txt``, and
SIGTERM / Ctrl-C turning into an ``interrupted`` state instead of a failure.

During pretraining ``fit`` takes SIGTERM over: it writes ``last.ckpt`` at the next step
boundary and raises :class:`~ssvrl.engine.preemption.Preempted`, recorded here as
``interrupted`` too, so the next sweep run resumes from that checkpoint exactly.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ssvrl.config.loader import save_config
from ssvrl.engine.preemption import Preempted
from ssvrl.sweep.configs import config_changes
from ssvrl.sweep.plan import Plan
from ssvrl.sweep.spec import SweepError
from ssvrl.sweep.status import (
    alive_here,
    now_iso,
    read_status,
    running_fields,
    write_status,
)

__all__ = ["RunContext", "RunFn", "execute_run"]

ERROR_TAIL = 60  # traceback lines kept in error.txt


@dataclass
class RunContext:
    """What a run function gets: the run's config and folder, the status of the previous
    attempt (to resume from) and whether to evaluate after pretraining."""

    cfg: Any
    folder: Path
    previous: dict[str, Any] = field(default_factory=dict)
    evaluate: bool = True

    def note(self, **fields: Any) -> None:
        """Record progress in ``status.json`` (e.g. that pretraining finished)."""
        write_status(self.folder, **fields)


# Returns the results: at least {"metrics": {name: number}}; more keys are kept as given.
RunFn = Callable[[RunContext], Mapping[str, Any]]


class _Stopped(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so that it unwinds like Ctrl-C."""


@contextmanager
def _stop_on_signals(flag: list[int]) -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`_Stopped` and are remembered in ``flag`` (Lightning
    turns a KeyboardInterrupt into ``sys.exit(1)``, so the exception alone cannot tell)."""
    def handler(signum: int, frame: FrameType | None) -> None:
        flag.append(signum)
        raise _Stopped(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():  # only main may set them
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def execute_run(plan: Plan, index: int, run_fn: RunFn | None = None) -> int:
    """Run ``plan.runs[index]`` here unless done; 0 done, 1 failed, 130 interrupted."""
    if not 0 <= index < len(plan.runs):
        raise SweepError(f"--run-index {index}: the sweep has runs 0..{len(plan.runs) - 1}")
    run, cfg = plan.runs[index], plan.configs[index]
    folder = plan.folder(run)
    previous = read_status(folder)
    if previous.get("state") == "done":
        print(f"{run.name}: already done")
        return 0
    if previous.get("state") == "running" and alive_here(previous):
        print(f"{run.name}: already running (pid {previous['pid']})", file=sys.stderr)
        return 1
    _ensure_config(cfg, folder, run.name)
    if run_fn is None:
        from ssvrl.sweep.work import pretrain_and_probe

        run_fn = pretrain_and_probe
    attempt = int(previous.get("attempts", 0)) + 1
    identity = {"index": run.index, "run": run.name, "labels": run.labels, "seed": run.seed}
    start = write_status(folder, **running_fields(), **identity, attempts=attempt, error=None)
    (folder / "error.txt").unlink(missing_ok=True)
    ctx = RunContext(cfg, folder, previous, evaluate=plan.spec.evaluate != ())
    stopped: list[int] = []
    try:
        with _stop_on_signals(stopped):
            results = dict(run_fn(ctx))
    except BaseException as err:  # noqa: BLE001  (the child reports every way a run can end)
        interrupted = bool(stopped) or isinstance(err, KeyboardInterrupt | Preempted)
        state = "interrupted" if interrupted else "failed"
        tail = "".join(traceback.format_exception(err)).splitlines()[-ERROR_TAIL:]
        (folder / "error.txt").write_text("\n".join(tail) + "\n", encoding="utf-8")
        summary = f"{type(err).__name__}: {err}".strip().splitlines()[0][:300]
        if isinstance(err, Preempted):  # "stopped by SIGTERM at step N ...; checkpoint ..."
            summary = str(err)[:300]
        elif stopped:  # Lightning turns the signal into SystemExit(1): name the signal instead
            summary = f"stopped by {signal.Signals(stopped[0]).name}"
        write_status(folder, state=state, end=now_iso(), end_ts=time.time(), error=summary)
        print(f"{run.name}: {state}: {summary}", file=sys.stderr)
        return 130 if interrupted else 1
    seconds = round(time.time() - start["start_ts"], 1)
    record = {"run": run.name, "labels": run.labels, "values": run.values, "seed": run.seed,
              "seconds": seconds, **results}
    (folder / "results.json").write_text(json.dumps(record, indent=2, default=str), "utf-8")
    write_status(folder, state="done", end=now_iso(), end_ts=time.time(), seconds=seconds)
    return 0


def _ensure_config(cfg: Any, folder: Path, name: str) -> None:
    """Save the run's config, or refuse when the folder holds a different one."""
    saved = folder / "config.yaml"
    if not saved.is_file():
        save_config(cfg, saved)
        return
    changes = config_changes(cfg, saved)
    if changes:
        raise SweepError(f"{saved} differs from the sweep file's config for {name}: "
                         f"{'; '.join(changes[:3])}")
