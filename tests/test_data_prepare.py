"""ssvrl data prepare: re-encoded videos keep frames, layout and labels; random access is exact;
reruns resume; corrupt sources are reported and skipped."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ssvrl.cli import main
from ssvrl.data.encode import EncodeSettings, target_size, transcode
from ssvrl.data.prepare import MANIFEST, PrepareSummary, prepare_dataset, temp_path
from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset
from ssvrl.data.video_reader import open_video
from tests.test_video_reader import _encode_numbered, _frame_numbers

pytestmark = pytest.mark.timeout(120)
decord = pytest.importorskip("decord")

REAL = ("test.mp4", "test.avi", "demo_skeleton_1080p.mp4")
NUMBERED = {  # sources with B-frames, where decord's random access is wrong or slow
    "numbered/open_gop.mp4": "libx264",
    "numbered/bframes.avi": "mpeg4",
    "numbered/open_gop.mkv": "libx264",
}
SHORT = 64


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Synthetic UCF101 layout + real mmaction2 files + frame-numbered videos + a corrupt one."""
    root = tmp_path_factory.mktemp("src")
    write_synthetic_dataset(
        root, SynthSpec(num_classes=3, groups=3, clips_per_group=2, frames=36, seed=2), workers=2
    )
    (root / "real").mkdir()
    for name in REAL:
        shutil.copy2(shared_data / "mmaction2" / name, root / "real" / name)
    (root / "numbered").mkdir()
    for rel, codec in NUMBERED.items():
        _encode_numbered(root / rel, codec, n=40, gop=12, closed=False)
    webm = root / "numbered" / "vp9.webm"
    transcode(root / "numbered" / "bframes.avi", webm, "libvpx-vp9", EncodeSettings(gop=30))
    (root / "broken").mkdir()
    (root / "broken" / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    (root / "broken" / "notes.txt").write_text("not a video\n")
    return root


@pytest.fixture(scope="module")
def prepared(src: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PrepareSummary]:
    dst = tmp_path_factory.mktemp("dst") / "out"
    summary = prepare_dataset(
        src, dst, EncodeSettings(short_side=SHORT), workers=2, timeout=60, progress=False
    )
    return dst, summary


def _videos(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.suffix in (".avi", ".mp4", ".mkv", ".webm")
    )


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_summary_reports_the_corrupt_source(
    src: Path, prepared: tuple[Path, PrepareSummary]
) -> None:
    dst, summary = prepared
    n = len(_videos(src))
    assert summary.videos == n and summary.skipped == 0
    assert summary.encoded == n - 1
    [(rel, reason)] = summary.failed
    assert rel == "broken/random.mp4" and "cannot open" in reason
    assert not (dst / rel).exists()
    assert not [p for p in dst.rglob("*") if ".part" in p.name]


def test_layout_and_other_files_kept(src: Path, prepared: tuple[Path, PrepareSummary]) -> None:
    dst, _ = prepared
    expected = [f for f in _files(src) if f != "broken/random.mp4"]
    assert _files(dst) == sorted([*expected, MANIFEST])
    for rel in expected:
        if not rel.endswith((".avi", ".mp4", ".mkv", ".webm")):
            assert (dst / rel).read_bytes() == (src / rel).read_bytes(), rel  # CRLF kept too


def test_frame_count_fps_and_size(src: Path, prepared: tuple[Path, PrepareSummary]) -> None:
    dst, _ = prepared
    for rel in _videos(dst):
        with open_video(src / rel, "pyav") as a, open_video(dst / rel, "pyav") as b:
            assert b.num_frames == a.num_frames, rel  # PyAV's count is exact (demuxed packets)
            assert b.fps == pytest.approx(a.fps, rel=1e-3), rel
            (h0, w0), (h, w) = a.size, b.size
        with open_video(dst / rel, "decord") as c:
            assert c.num_frames == a.num_frames, rel
        assert (h, w) == target_size(h0, w0, SHORT), rel
        assert h % 2 == 0 and w % 2 == 0 and min(h, w) == min(SHORT, h0, w0), rel
        assert abs(w / h - w0 / h0) < 0.04, rel


def test_no_b_frames_and_short_gop(prepared: tuple[Path, PrepareSummary]) -> None:
    av = pytest.importorskip("av")
    dst, _ = prepared
    for rel in _videos(dst):
        with av.open(str(dst / rel)) as container:
            stream = container.streams.video[0]
            packets = [p for p in container.demux(stream) if p.size]
            assert not stream.codec_context.has_b_frames, rel
            assert not container.streams.audio, rel  # audio dropped (test.avi has some)
        keys = [i for i, p in enumerate(packets) if p.is_keyframe]
        assert keys[0] == 0 and max(np.diff([*keys, len(packets)])) <= 16, rel


@pytest.mark.parametrize("rel", sorted([*NUMBERED, "numbered/vp9.webm"]))
def test_decord_random_access_is_frame_exact_on_numbered_outputs(
    prepared: tuple[Path, PrepareSummary], rel: str
) -> None:
    dst, _ = prepared
    rng = np.random.default_rng(4)
    with open_video(dst / rel, "decord") as reader:
        assert _frame_numbers(reader.get_frames(range(40))) == list(range(40))
        for _ in range(25):
            indices = rng.integers(0, 40, size=int(rng.integers(1, 6))).tolist()
            assert _frame_numbers(reader.get_frames(indices)) == indices


@pytest.mark.parametrize("name", REAL)
def test_decord_random_access_matches_sequential_decode(
    prepared: tuple[Path, PrepareSummary], name: str
) -> None:
    dst, _ = prepared
    path = dst / "real" / name
    sequential = (
        decord.VideoReader(str(path))
        .get_batch(list(range(len(decord.VideoReader(str(path))))))
        .asnumpy()
    )  # (N, H, W, 3), decoded in order
    rng = np.random.default_rng(5)
    with open_video(path, "decord") as reader:
        for _ in range(15):
            indices = rng.integers(0, reader.num_frames, size=4).tolist()
            assert np.array_equal(reader.get_frames(indices).numpy(), sequential[indices])


def test_training_index_has_the_same_labels(
    src: Path, prepared: tuple[Path, PrepareSummary]
) -> None:
    from ssvrl.config.schema import DataConfig
    from ssvrl.engine.build import build_video_index

    dst, _ = prepared
    for subset in ("train", "test"):
        a, b = (
            build_video_index(
                DataConfig(root=str(r / "videos"), annotations=str(r / "annotations")), subset
            )
            for r in (src, dst)
        )
        assert not b.missing and a.classes == b.classes
        assert [(r.path.relative_to(a.root), r.label) for r in a.records] == [
            (r.path.relative_to(b.root), r.label) for r in b.records
        ]


def test_rerun_skips_everything(
    src: Path, prepared: tuple[Path, PrepareSummary], capsys: pytest.CaptureFixture[str]
) -> None:
    dst, _ = prepared
    stamps = {rel: (dst / rel).stat().st_mtime_ns for rel in _videos(dst)}
    code = main(
        ["data", "prepare", str(src), str(dst), "--short-side", str(SHORT), "--workers", "2"]
    )
    out = capsys.readouterr().out
    assert code == 1  # the corrupt source fails again
    n = len(_videos(src))
    assert f"0 encoded, {n - 1} already done, 1 failed" in out
    assert "broken/random.mp4: cannot open" in out
    assert {rel: (dst / rel).stat().st_mtime_ns for rel in _videos(dst)} == stamps


def _small_src(src: Path, dst: Path) -> Path:
    """Four videos of ``src`` in two folders, plus one text file."""
    for rel in (
        "real/test.avi",
        "numbered/open_gop.mp4",
        "numbered/bframes.avi",
        "numbered/open_gop.mkv",
    ):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    (dst / "list.txt").write_text("real/test.avi 1\n")
    return dst


def test_resume_after_an_interrupted_run(src: Path, tmp_path: Path) -> None:
    small, out = _small_src(src, tmp_path / "small"), tmp_path / "out"
    first = prepare_dataset(small, out, workers=2, progress=False)
    assert first.encoded == 4 and not first.failed and first.copied == 1
    # Simulate a run killed mid-video: a half-written temporary, no manifest entry, no output.
    victim = out / "numbered" / "open_gop.mp4"
    victim.unlink()
    temp_path(victim).write_bytes(b"half a video")
    manifest = json.loads((out / MANIFEST).read_text())
    del manifest["files"]["numbered/open_gop.mp4"]
    del manifest["files"]["real/test.avi"]  # output there, entry lost: encoded again
    (out / MANIFEST).write_text(json.dumps(manifest))
    stamp = (out / "numbered" / "bframes.avi").stat().st_mtime_ns
    second = prepare_dataset(small, out, workers=2, progress=False)
    assert (second.encoded, second.skipped, second.copies_skipped) == (2, 2, 1)
    assert not temp_path(victim).exists()
    with open_video(victim, "decord") as reader:
        assert _frame_numbers(reader.get_frames([39, 3, 20])) == [39, 3, 20]
    assert (out / "numbered" / "bframes.avi").stat().st_mtime_ns == stamp
    # A changed source and a changed setting are re-encoded.
    os.utime(small / "real" / "test.avi")
    assert prepare_dataset(small, out, workers=2, progress=False).encoded == 1
    third = prepare_dataset(small, out, EncodeSettings(gop=8), workers=2, progress=False)
    assert third.encoded == 4


def test_killed_run_then_rerun_completes(src: Path, tmp_path: Path) -> None:
    small, out = _small_src(src, tmp_path / "small"), tmp_path / "out"
    for i in range(6):  # enough work that the kill lands mid-run
        shutil.copy2(small / "real" / "test.avi", small / "real" / f"copy{i}.avi")
    cmd = [
        sys.executable,
        "-m",
        "ssvrl",
        "data",
        "prepare",
        str(small),
        str(out),
        "--workers",
        "1",
        "--short-side",
        "240",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(out.rglob("copy*.avi")):
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker, as a crash would
        proc.wait()
    done = len(list(out.rglob("copy*.avi")))
    assert 1 <= done < 6
    summary = prepare_dataset(small, out, EncodeSettings(short_side=240), workers=2, progress=False)
    assert not summary.failed and summary.encoded + summary.skipped == 10
    assert summary.encoded >= 10 - done  # at least everything not finished before the kill
    assert not [p for p in out.rglob("*") if ".part" in p.name]
    for i in range(6):
        with open_video(out / "real" / f"copy{i}.avi", "pyav") as reader:
            assert reader.num_frames == 164


def test_target_size() -> None:
    assert target_size(256, 340, 128) == (128, 170)
    assert target_size(1080, 1920, 128) == (128, 228)
    assert target_size(1920, 1080, 256) == (456, 256)  # portrait: width is the short side
    assert target_size(64, 128, 128) == (64, 128)  # never upscaled
    assert target_size(241, 321, 256) == (240, 320)  # odd sizes made even


def test_settings_validation(src: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="libvpx-vp9.*cannot go in .avi"):
        EncodeSettings(codecs={".avi": "libvpx-vp9"})
    with pytest.raises(ValueError, match="gop"):
        EncodeSettings(gop=0)
    assert main(["data", "prepare", str(src), str(tmp_path), "--codec", "avi=libvpx"]) == 2
    assert main(["data", "prepare", str(src), str(src / "inside")]) == 2  # overlapping folders
    assert not (src / "inside").exists()
    assert dataclasses.replace(EncodeSettings(), crf=30).key("libx264")["crf"] == 30
