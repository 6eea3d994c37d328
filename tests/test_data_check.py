"""ssvrl data check: statuses, report files, exit codes, and the index cache it writes."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import ssvrl.data.check as check
from ssvrl.cli import load_experiment, main
from ssvrl.data.index_cache import cache_file, fingerprint, load_cached_index
from ssvrl.data.synthetic import SynthSpec, encode_video, write_synthetic_dataset
from ssvrl.data.video_reader import open_video

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "cvrl" / "quickstart.yaml")  # 8 frames x stride 4: span 29


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(
        out, SynthSpec(num_classes=3, groups=3, clips_per_group=2, frames=32, seed=5), workers=2
    )
    return out


def _overrides(data: Path) -> list[str]:
    return [f"data.root={data / 'videos'}", f"data.annotations={data / 'annotations'}"]


def _rows(report_dir: Path) -> dict[str, dict[str, str]]:
    with (report_dir / "check.csv").open() as f:
        return {Path(r["path"]).name: r for r in csv.DictReader(f)}


def _hanging_probe(job: check.ProbeJob) -> check.Probe:
    """The real probe, except that one file hangs (as a decoder stuck in a loop would)."""
    if job.path.endswith("v_MoveRight_g03_c02.avi"):
        time.sleep(60)
    return _real_probe(job)


_real_probe = check.probe_video


@pytest.fixture()
def broken(clean: Path, tmp_path: Path) -> Path:
    """The clean dataset with one video of each bad kind."""
    data = tmp_path / "data"
    shutil.copytree(clean, data)
    videos = data / "videos"
    (videos / "MoveLeft" / "v_MoveLeft_g01_c01.avi").write_bytes(b"")  # empty
    (videos / "MoveLeft" / "v_MoveLeft_g02_c01.avi").write_bytes(os.urandom(5000))  # garbage
    whole = (videos / "MoveLeft" / "v_MoveLeft_g03_c01.avi").read_bytes()
    (videos / "MoveLeft" / "v_MoveLeft_g03_c01.avi").write_bytes(whole[: len(whole) // 2])
    (videos / "MoveRight" / "v_MoveRight_g01_c01.avi").unlink()  # missing
    short = videos / "MoveRight" / "v_MoveRight_g02_c01.avi"
    encode_video(_decode_all(short)[:10], short)  # 10 frames < span 29: too_short
    return data


def _decode_all(path: Path) -> np.ndarray:
    """Every frame of ``path``: uint8 (T, H, W, 3)."""
    with open_video(path, "pyav") as reader:
        return reader.get_frames(range(reader.num_frames)).numpy()


def test_statuses_report_and_exit_code(
    broken: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(check, "probe_video", _hanging_probe)
    out = tmp_path / "report"
    start = time.monotonic()
    code = main(
        [
            "data",
            "check",
            CONFIG,
            *_overrides(broken),
            "--out",
            str(out),
            "--timeout",
            "2",
            "--workers",
            "2",
        ]
    )
    assert time.monotonic() - start < 40  # the 60 s hang was cut at 2 s
    assert code == 1
    rows = _rows(out)
    assert len(rows) == 18
    expected = {
        "v_MoveLeft_g01_c01.avi": "unreadable",
        "v_MoveLeft_g02_c01.avi": "unreadable",
        "v_MoveLeft_g03_c01.avi": "too_short",  # cut in half: 12 of 32 frames still decode
        "v_MoveRight_g01_c01.avi": "missing",
        "v_MoveRight_g02_c01.avi": "too_short",
        "v_MoveRight_g03_c02.avi": "timeout",
    }
    assert {name: r["status"] for name, r in rows.items() if r["status"] != "ok"} == expected
    assert rows["v_MoveLeft_g01_c01.avi"]["reason"] == "empty file"
    assert rows["v_MoveRight_g02_c01.avi"]["num_frames"] == "10"
    assert rows["v_MoveRight_g02_c01.avi"]["reason"] == "10 frames < longest view span 29 (looped)"
    assert "header declares 32 frames, 12 decode" in rows["v_MoveLeft_g03_c01.avi"]["reason"]
    ok = rows["v_MoveUp_g01_c01.avi"]
    assert (ok["num_frames"], float(ok["fps"]), ok["height"], ok["width"]) == (
        "32",
        25.0,
        "64",
        "64",
    )
    assert {r["subset"] for r in rows.values()} == {"train", "test"}
    summary = json.loads((out / "check.json").read_text())["summary"]
    assert summary["counts"] == {
        "ok": 12,
        "too_short": 2,
        "unreadable": 2,
        "timeout": 1,
        "missing": 1,
    }
    assert summary["min_frames"] == 29
    printed = capsys.readouterr().out
    assert "bad videos (4):" in printed
    assert "v_MoveLeft_g02_c01.avi" in printed and "v_MoveRight_g03_c02.avi" in printed
    assert "v_MoveRight_g02_c01.avi" not in printed.split("bad videos")[1]  # a warning only


def test_index_cache_excludes_bad_files_and_tracks_changes(
    broken: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssvrl.engine.build import build_video_index

    cfg = load_experiment(CONFIG, _overrides(broken))
    assert load_cached_index(cfg.data, "train") is None  # nothing cached yet
    monkeypatch.setattr(check, "probe_video", _hanging_probe)
    report = check.check_dataset(cfg, workers=2, timeout=2, progress=False)
    assert report.cache_path is not None and report.cache_path == cache_file(cfg.data)
    assert report.cache_path.parent == broken / "videos" / ".ssvrl_cache"
    assert not list(report.cache_path.parent.glob("*.tmp"))
    lenient = dataclasses.replace(cfg.data, max_missing_fraction=1.0)
    for subset in ("train", "test"):
        fresh = build_video_index(lenient, subset, use_cache=False)
        cached = load_cached_index(cfg.data, subset)
        assert cached is not None and cached.backend == "decord"
        assert build_video_index(lenient, subset).records == cached.index.records  # training
        pyav = dataclasses.replace(lenient, backend="pyav")  # another decoder: checked afresh
        assert build_video_index(pyav, subset).records == fresh.records
        bad = {p for p, _, _ in cached.bad}
        assert cached.index.records == tuple(r for r in fresh.records if r.path not in bad)
        assert cached.index.missing == fresh.missing and cached.index.classes == fresh.classes
        assert set(cached.info) == {r.path for r in fresh.records} | set(fresh.missing)
    names = set()
    for subset in ("train", "test"):
        cached = load_cached_index(cfg.data, subset)
        assert cached is not None
        names |= {p.name for p, status, _ in cached.bad if status in ("unreadable", "timeout")}
    assert names == {
        "v_MoveLeft_g01_c01.avi",
        "v_MoveLeft_g02_c01.avi",
        "v_MoveRight_g03_c02.avi",
    }
    # Loader-only settings keep the cache; index-defining ones and file changes drop it.
    assert load_cached_index(dataclasses.replace(cfg.data, short_side=32), "train") is not None
    assert load_cached_index(dataclasses.replace(cfg.data, split=2), "train") is None
    before = fingerprint(cfg.data)
    listing = broken / "annotations" / "trainlist01.txt"
    os.utime(listing, ns=(listing.stat().st_atime_ns, listing.stat().st_mtime_ns + 10**9))
    assert fingerprint(cfg.data) != before
    assert load_cached_index(cfg.data, "train") is None


def test_removed_video_invalidates_cache(clean: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(clean, data)
    cache = tmp_path / "cache"
    cfg = load_experiment(CONFIG, [*_overrides(data), f"data.cache_dir={cache}"])
    report = check.check_dataset(cfg, workers=2, timeout=20, progress=False)
    assert not report.bad and report.cache_path is not None
    assert report.cache_path.parent == cache
    assert not (data / "videos" / ".ssvrl_cache").exists()
    cached = load_cached_index(cfg.data, "train")
    assert cached is not None and len(cached.index) == 12
    (data / "videos" / "MoveUp" / "v_MoveUp_g02_c01.avi").unlink()
    assert load_cached_index(cfg.data, "train") is None


def test_all_ok_exit_code_and_config_errors(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    args = [
        "data",
        "check",
        CONFIG,
        *_overrides(clean),
        "objective.stride=1",
        f"data.cache_dir={tmp_path / 'c'}",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "ok                18" in printed and "bad videos" not in printed
    assert (
        main(
            [
                "data",
                "check",
                CONFIG,
                f"data.root={clean / 'videos'}",
                f"data.annotations={tmp_path / 'nowhere'}",
            ]
        )
        == 2
    )
    assert "nowhere" in capsys.readouterr().err
    assert main(["data", "check", CONFIG, "data.no_such_key=1"]) == 2
    assert main(["data", "check", str(tmp_path / "missing.yaml")]) == 2


def test_real_videos(shared_data: Path, tmp_path: Path) -> None:
    """Frame counts, rates and sizes of the real files; the 32-frame clip is too short for a
    span of 36 (8 frames x stride 5)."""
    root = tmp_path / "videos"
    root.mkdir()
    names = ["test.mp4", "test.avi", "rawvideo_part_0.mp4", "demo_skeleton_1080p.mp4"]
    for name in names:
        shutil.copy2(shared_data / "mmaction2" / name, root / name)
    (tmp_path / "train.csv").write_text("".join(f"{n},{i % 2}\n" for i, n in enumerate(names)))
    cfg = load_experiment(
        CONFIG,
        [
            "data.format=csv",
            f"data.root={root}",
            f"data.train_list={tmp_path / 'train.csv'}",
            "objective.stride=5",
            "data.short_side=128",
        ],
    )
    report = check.check_dataset(cfg, workers=2, timeout=30, out_dir=tmp_path / "r", progress=False)
    got = {
        Path(r.path).name: (r.status, r.num_frames, round(r.fps or 0, 2), r.height, r.width)
        for r in report.rows
    }
    assert got == {
        "test.mp4": ("ok", 300, 30.0, 256, 340),
        "test.avi": ("ok", 164, 25.0, 240, 320),
        "rawvideo_part_0.mp4": ("too_short", 32, 30.0, 256, 340),
        "demo_skeleton_1080p.mp4": ("ok", 72, 28.05, 1080, 1920),
    }
    assert any("test subset skipped" in note for note in report.notes)
    assert report.min_frames == 36


def test_probe_indices_reach_the_last_frame() -> None:
    assert check._probe_indices(300) == [0, 75, 150, 224, 299]
    assert check._probe_indices(3) == [0, 1, 2]
    assert check._probe_indices(1) == [0]
