"""BadVideoLog: once across processes, counted, limit enforced."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ssvrl.data.bad_videos import BadVideoLog, TooManyBadVideosError


def test_logged_once_across_instances(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, b = BadVideoLog(tmp_path, 100), BadVideoLog(tmp_path, 100)  # two "workers"
    with caplog.at_level(logging.WARNING, "ssvrl.data"):
        a.record(Path("/v/x.avi"), "truncated")
        b.record(Path("/v/x.avi"), "truncated")
        b.record(Path("/v/y.avi"), "empty file")
    assert [r.getMessage().count("x.avi") for r in caplog.records] == [1, 0]
    assert b.is_bad(Path("/v/x.avi")) and a.is_bad(Path("/v/y.avi"))
    assert not a.is_bad(Path("/v/z.avi"))
    assert a.count() == 2
    assert [d["path"] for d in a.summary()] == ["/v/x.avi", "/v/y.avi"]


def test_limit(tmp_path: Path) -> None:
    log = BadVideoLog(tmp_path, total=10, max_fraction=0.2)
    log.record(Path("a"), "r")
    log.record(Path("b"), "r")
    with pytest.raises(TooManyBadVideosError, match="3 of 10"):
        log.record(Path("c"), "r")
