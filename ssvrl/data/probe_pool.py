"""A process pool whose tasks each get a deadline: a task that overruns is killed, not awaited.

``concurrent.futures`` cannot stop a running task: a worker stuck in a decoder (a malformed
file can make FFmpeg loop forever) blocks its pool until the end. :func:`imap_bounded` instead
runs one child process per worker slot, each connected by its own pipe, and hands each child one
task at a time. The parent waits on all pipes with the earliest deadline as its timeout; a child
whose task passes its deadline is killed (SIGKILL) and replaced by a fresh one, and the task is
reported as timed out. A child that dies on its own (segfault in a C library, out of memory) is
reported the same way with its exit code. Results stream back in completion order.

Children are forked where the platform allows it (cheap to start, and ``fn`` need not be
importable), else spawned (``fn`` must then be picklable). Items and results always travel
through a pipe, so they must be picklable.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Generic, Literal, TypeVar, cast

__all__ = ["TaskResult", "imap_bounded"]

T = TypeVar("T")
R = TypeVar("R")
Status = Literal["ok", "error", "timeout", "crashed"]
_BOOT_SECONDS = 120.0  # a new child's own start-up (imports under spawn) is not its task's time


@dataclass(frozen=True)
class TaskResult(Generic[T, R]):
    """The outcome of one task.

    Attributes:
        index: position of the item in the input.
        item: the input item itself.
        status: ``"ok"`` (``value`` holds the return value), ``"error"`` (the function raised;
            ``error`` holds ``"Type: message"``), ``"timeout"`` (killed at its deadline) or
            ``"crashed"`` (the worker process died; ``error`` holds its exit code).
        value: the function's return value when ``status == "ok"``, else None.
        error: a one-line reason when ``status != "ok"``, else None.
        seconds: wall time from the start of the task in the worker (a new worker's start-up
            excluded) until the outcome was known.
    """

    index: int
    item: T
    status: Status
    value: R | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _child_main(fn: Callable[[Any], Any], conn: Connection) -> None:
    """Worker loop: say ``("ready", None)``, then receive ``(index, item)`` and send
    ``("ok", value)`` or ``("error", text)`` until told to stop."""
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        _, item = message
        try:
            reply: tuple[str, Any] = ("ok", fn(item))
        except Exception as err:  # noqa: BLE001  (every task failure is reported, never raised)
            reply = ("error", _one_line(err))
        try:
            conn.send(reply)
        except Exception as err:  # noqa: BLE001  (an unpicklable return value)
            conn.send(("error", f"result could not be sent back: {_one_line(err)}"))


def _one_line(err: BaseException) -> str:
    """``"Type: first line of the message"`` (tracebacks stay in the worker)."""
    text = str(err).strip().splitlines()
    detail = text[0][:500] if text else ""
    if not detail:
        detail = traceback.format_exception_only(type(err), err)[-1].strip()
    return f"{type(err).__name__}: {detail}"


class _Worker:
    """One child process, its pipe, and the task it is running (if any)."""

    def __init__(self, ctx: BaseContext, fn: Callable[[Any], Any]) -> None:
        self.booting = True  # until the child says "ready" (spawn re-imports modules: seconds)
        parent, child = ctx.Pipe(duplex=True)
        self.conn: Connection = parent
        self.process: BaseProcess = ctx.Process(  # type: ignore[attr-defined]
            target=_child_main, args=(fn, child), daemon=True
        )
        self.process.start()
        child.close()  # the parent keeps only its end, so a dead child reads as EOF
        self.task: tuple[int, Any] | None = None
        self.started = 0.0
        self.deadline = float("inf")

    def submit(self, index: int, item: Any, timeout: float | None) -> None:
        self.task = (index, item)
        self.conn.send((index, item))
        self.restart_clock(timeout, _BOOT_SECONDS if self.booting else 0.0)

    def restart_clock(self, timeout: float | None, extra: float = 0.0) -> None:
        """The task's deadline counts from now (plus ``extra`` seconds for a booting child)."""
        self.started = time.monotonic()
        self.deadline = self.started + timeout + extra if timeout is not None else float("inf")

    def kill(self) -> int | None:
        """SIGKILL the child (if alive), reap it, close the pipe; returns its exit code."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()
        return self.process.exitcode

    def stop(self) -> None:
        """Ask an idle child to exit; kill it if it does not within a second."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=1)
        self.kill()


def _context(start_method: str | None) -> BaseContext:
    if start_method is None:
        start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(start_method)


def imap_bounded(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    timeout: float | None = None,
    start_method: str | None = None,
) -> Generator[TaskResult[T, R], None, None]:
    """Run ``fn(item)`` for every item in worker processes; yield outcomes as they complete.

    Args:
        fn: the task; exceptions it raises become ``status="error"`` results.
        items: inputs, consumed lazily (at most ``workers`` are in flight).
        workers: child processes (default: CPU count); at least 1, tasks never run in-process
            (a deadline could not be enforced there).
        timeout: seconds per task; an overrunning child is killed and replaced. None: no
            deadline. A new child's own start-up does not count (up to 120 s).
        start_method: ``"fork"``, ``"spawn"`` or ``"forkserver"`` (default fork where
            available).

    Every child is stopped when the iterator is exhausted or closed (``break`` in a ``for``
    loop closes it), and killed on KeyboardInterrupt.
    """
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout}")
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {n_workers}")
    ctx = _context(start_method)
    pending = iter(enumerate(items))
    idle: deque[_Worker] = deque()
    busy: dict[Connection, _Worker] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(busy) < n_workers:
                nxt = next(pending, None)
                if nxt is None:
                    exhausted = True
                    break
                worker = idle.popleft() if idle else _Worker(ctx, fn)
                worker.submit(nxt[0], nxt[1], timeout)
                busy[worker.conn] = worker
            if not busy:
                return
            now = time.monotonic()
            wait_for = max(0.0, min(w.deadline for w in busy.values()) - now)
            limit = None if wait_for == float("inf") else wait_for
            ready = cast(list[Connection], wait(list(busy), timeout=limit))
            for conn in ready:
                worker = busy[conn]
                if worker.booting and _booted(worker, timeout):
                    continue  # the clock of its task starts now
                del busy[conn]
                yield _collect(worker, idle)
            now = time.monotonic()
            for conn, worker in list(busy.items()):
                if worker.deadline <= now and not conn.poll():  # a reply waiting still counts
                    del busy[conn]
                    yield _expire(worker)
    finally:
        for worker in busy.values():
            worker.kill()
        for worker in idle:
            worker.stop()


def _booted(worker: _Worker, timeout: float | None) -> bool:
    """Consume a fresh child's ``ready`` message and start its task's clock; False if the
    child died before saying it (the caller then collects the crash)."""
    try:
        kind, _ = worker.conn.recv()
    except (EOFError, OSError):
        return False
    assert kind == "ready", kind
    worker.booting = False
    worker.restart_clock(timeout)
    return True


def _collect(worker: _Worker, idle: deque[_Worker]) -> TaskResult[Any, Any]:
    """Read a ready worker's reply; an idle-again worker goes back to ``idle``."""
    assert worker.task is not None
    index, item = worker.task
    seconds = time.monotonic() - worker.started
    try:
        kind, payload = worker.conn.recv()
    except (EOFError, OSError):
        code = worker.kill()
        return TaskResult(index, item, "crashed", error=_exit_reason(code), seconds=seconds)
    worker.task = None
    idle.append(worker)
    if kind == "ok":
        return TaskResult(index, item, "ok", value=payload, seconds=seconds)
    return TaskResult(index, item, "error", error=str(payload), seconds=seconds)


def _expire(worker: _Worker) -> TaskResult[Any, Any]:
    """Kill a worker whose task overran its deadline."""
    assert worker.task is not None
    index, item = worker.task
    seconds = time.monotonic() - worker.started
    worker.kill()
    return TaskResult(
        index, item, "timeout", error=f"no result after {seconds:.1f} s", seconds=seconds
    )


def _exit_reason(code: int | None) -> str:
    """Human-readable cause of a worker's death from its exit code."""
    if code is not None and code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker process died ({name})"
    return f"worker process died (exit code {code})"
