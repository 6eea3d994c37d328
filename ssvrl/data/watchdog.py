"""Bound a decode by a timeout: a hung decoder becomes a bad video, not a hung worker.

decord and FFmpeg can block forever on some broken files. Python cannot interrupt a thread
stuck in C, so :class:`Watchdog` runs each call on a daemon thread and waits at most
``timeout`` seconds: on overrun it raises :class:`CallTimeout` and abandons that thread (it
holds its file until the call returns, if ever; being a daemon it never blocks process exit)
and starts a fresh one for the next call. Both decoders release the GIL while decoding, so the
caller keeps running. The thread is created lazily, inside the process that calls (a DataLoader
worker), never before a fork.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CallTimeout", "Watchdog"]

T = TypeVar("T")


class CallTimeout(TimeoutError):
    """The call did not return within the watchdog's timeout."""


class _Job:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


def _serve(jobs: queue.SimpleQueue[_Job]) -> None:
    """Thread body: run jobs one by one until the thread is abandoned (then it just idles)."""
    while True:
        job = jobs.get()
        try:
            job.result = job.fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            job.error = err
        job.done.set()


class Watchdog:
    """Run callables on a helper thread with a deadline; ``timeout <= 0`` runs them inline."""

    def __init__(self, timeout: float) -> None:
        self.timeout = float(timeout)
        self._jobs: queue.SimpleQueue[_Job] | None = None
        self._pid = -1
        self.abandoned = 0  # threads given up on (each is stuck in one call)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (to spawned workers) without the thread and its queue."""
        return {"timeout": self.timeout, "_jobs": None, "_pid": -1, "abandoned": 0}

    def _queue(self) -> queue.SimpleQueue[_Job]:
        if self._jobs is None or self._pid != os.getpid():  # new process: fresh thread
            self._jobs = queue.SimpleQueue()
            self._pid = os.getpid()
            threading.Thread(
                target=_serve, args=(self._jobs,), name="ssvrl-decode", daemon=True
            ).start()
        return self._jobs

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, or :class:`CallTimeout` after ``timeout`` seconds; its exceptions pass."""
        if self.timeout <= 0:
            return fn()
        job = _Job(fn)
        self._queue().put(job)
        if not job.done.wait(self.timeout):
            self._jobs = None  # abandon the stuck thread; the next call starts a new one
            self.abandoned += 1
            raise CallTimeout(f"no result after {self.timeout:g} s")
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]
