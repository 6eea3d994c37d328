"""SharedRunDir: a rank other than 0 adopts rank 0's run folder and moves its bad-video logs
(training set and the online probe's test set) there, so every rank writes the same markers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.engine.run_dir import SharedRunDir, placeholder_run_dir


def _trainer(shared: Path, val_bad: BadVideoLog | None) -> SimpleNamespace:
    strategy = SimpleNamespace(broadcast=lambda obj, src=0: str(shared))  # rank 0's folder
    datamodule = SimpleNamespace(val_dataset=SimpleNamespace(bad=val_bad))
    return SimpleNamespace(strategy=strategy, datamodule=datamodule)


def test_rank_one_moves_both_bad_video_logs_into_rank_zeros_folder(tmp_path: Path) -> None:
    shared = tmp_path / "version_0"
    (shared / "bad_videos").mkdir(parents=True)
    (shared / "bad_videos_test").mkdir()
    own = placeholder_run_dir()
    bad = BadVideoLog(own / "bad_videos", total=10)
    val_bad = BadVideoLog(own / "bad_videos_test", total=10)
    cb = SharedRunDir(own, bad)
    cb.setup(_trainer(shared, val_bad), None, "fit")  # type: ignore[arg-type]
    assert cb.run_dir == shared
    assert bad.folder == shared / "bad_videos"
    assert val_bad.folder == shared / "bad_videos_test"
    val_bad.record(Path("/data/broken.avi"), "moov atom not found")
    assert BadVideoLog(shared / "bad_videos_test", total=10).count() == 1  # rank 0 sees it
    cb.teardown(None, None, "fit")  # type: ignore[arg-type]
    assert not own.exists()


def test_rank_zero_keeps_its_folder_and_a_run_without_probe_is_fine(tmp_path: Path) -> None:
    run = tmp_path / "version_0"
    bad = BadVideoLog(run / "bad_videos", total=10)
    cb = SharedRunDir(run, bad)
    cb.setup(_trainer(run, None), None, "fit")  # type: ignore[arg-type]
    assert cb.run_dir == run and bad.folder == run / "bad_videos"
    other = tmp_path / "elsewhere"
    bad2 = BadVideoLog(placeholder_run_dir() / "bad_videos", total=10)
    SharedRunDir(bad2.folder.parent, bad2).setup(_trainer(other, None), None, "fit")  # type: ignore[arg-type]
    assert bad2.folder == other / "bad_videos"
