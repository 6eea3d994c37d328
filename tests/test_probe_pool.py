"""ssvrl.data.probe_pool: results, errors, hung tasks killed at their deadline, crashed workers."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ssvrl.data.probe_pool import TaskResult, imap_bounded

pytestmark = pytest.mark.timeout(60)


def _task(item: tuple[str, float]) -> str:
    """``("ok", s)``: sleep s then return the pid; ``("hang", s)``: sleep s (longer than the
    timeout); ``("raise", _)``: raise; ``("die", _)``: kill this process as the OOM killer would."""
    kind, seconds = item
    if kind == "raise":
        raise ValueError(f"bad item {seconds}\nsecond line")
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    return f"{kind}:{os.getpid()}"


def _by_index(results: list[TaskResult]) -> dict[int, TaskResult]:
    return {r.index: r for r in results}


def test_all_items_come_back_with_values() -> None:
    items = [("ok", 0.0)] * 12
    results = list(imap_bounded(_task, items, workers=3, timeout=10))
    assert sorted(r.index for r in results) == list(range(12))
    assert all(r.ok and r.value and r.value.startswith("ok:") for r in results)
    pids = {r.value for r in results}
    assert 1 <= len(pids) <= 3  # workers are reused, never more than asked for
    assert str(os.getpid()) not in {p.split(":")[1] for p in pids if p}  # never in-process


def test_hung_task_is_killed_and_the_pool_carries_on() -> None:
    items = [("ok", 0.0), ("hang", 30.0), ("ok", 0.0), ("hang", 30.0)] + [("ok", 0.0)] * 6
    start = time.monotonic()
    results = _by_index(list(imap_bounded(_task, items, workers=2, timeout=0.5)))
    elapsed = time.monotonic() - start
    assert elapsed < 5  # two 30 s hangs cost about one timeout each, not 30 s
    assert sorted(results) == list(range(10))
    for i in (1, 3):
        assert results[i].status == "timeout"
        assert results[i].value is None and "no result after" in (results[i].error or "")
        assert 0.5 <= results[i].seconds < 3
    assert all(results[i].ok for i in range(10) if i not in (1, 3))


def test_every_worker_hanging_at_once() -> None:
    items = [("hang", 30.0)] * 3 + [("ok", 0.0)] * 3
    results = _by_index(list(imap_bounded(_task, items, workers=3, timeout=0.3)))
    assert [results[i].status for i in range(6)] == ["timeout"] * 3 + ["ok"] * 3


def test_exceptions_become_error_results() -> None:
    results = _by_index(list(imap_bounded(_task, [("raise", 7), ("ok", 0)], workers=1)))
    assert results[0].status == "error" and results[0].error == "ValueError: bad item 7"
    assert results[1].ok  # the worker that raised is still usable


def test_crashed_worker_is_reported_and_replaced() -> None:
    items = [("die", 0.0), ("ok", 0.0), ("die", 0.0), ("ok", 0.0)]
    results = _by_index(list(imap_bounded(_task, items, workers=1, timeout=10)))
    assert results[0].status == "crashed" and "SIGKILL" in (results[0].error or "")
    assert results[2].status == "crashed"
    assert results[1].ok and results[3].ok
    assert results[1].value != results[3].value  # a fresh process after the second crash


def test_closing_early_kills_running_workers() -> None:
    gen = imap_bounded(_task, [("ok", 0.0), ("hang", 30.0), ("hang", 30.0)], workers=3)
    first = next(gen)
    assert first.ok
    start = time.monotonic()
    gen.close()  # must not wait for the two 30 s tasks
    assert time.monotonic() - start < 5


def test_spawn_start_method() -> None:
    """Spawned children take seconds to import; that start-up is not charged to the task."""
    items = [("ok", 0.2), ("hang", 30.0)]
    results = _by_index(
        list(imap_bounded(_task, items, workers=2, timeout=0.5, start_method="spawn"))
    )
    assert results[0].ok and results[1].status == "timeout"
    assert results[1].seconds < 3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="workers"):
        list(imap_bounded(_task, [("ok", 0.0)], workers=0))
    with pytest.raises(ValueError, match="timeout"):
        list(imap_bounded(_task, [("ok", 0.0)], timeout=0))
    assert list(imap_bounded(_task, [], workers=2)) == []
