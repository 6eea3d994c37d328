"""Loader benchmark: clips/s of the CVRL two-view recipe through a real DataLoader.

Side by side in one run, on the same videos, sampler and seeds:

- ``original / per-view``: the source files, each view decoded by its own open + seek + decode
  (how per-clip research loaders read: one ``VideoReader`` per clip).
- ``original / decode-once``: ssvrl's :class:`PretrainDataset`: one open, the union of both
  clips' frames decoded once, split into views.
- ``prepared / per-view`` and ``prepared / decode-once``: the same after
  ``ssvrl data prepare`` (short side 128, a keyframe every 16 frames, no B-frames).

The source set defaults to copies of the real Kinetics-style clips in ``../shared/data``
(H.264 340x256 with B-frames and two keyframes per 10 s, and an XVID AVI like UCF101), or any
folder of videos (``--videos DIR``). ``--memory-clips N`` then reads N more clips with the
fastest loader and reports the workers' resident memory before and after (it must stay flat).

    .venv/bin/python benchmarks/loader_bench.py [--workers 0 2] [--samples 48] [--copies 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch  # noqa: F401  (before decord: decord2's libraries load NVBLAS)
from torch.utils.data import DataLoader

from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.dataset import (
    DecodeConfig,
    PretrainDataset,
    collate_samples,
    guarded_read,
    square_crop,
)
from ssvrl.data.encode import EncodeSettings
from ssvrl.data.epoch_sampler import EpochSampler
from ssvrl.data.index import VideoIndex, VideoRecord
from ssvrl.data.prepare import prepare_dataset
from ssvrl.data.sampling import IntervalPairSampler, TemporalView

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mmaction2"
SOURCES = ("test.mp4", "demo.mp4", "test.avi")
VIDEO_EXT = {".mp4", ".avi", ".mkv", ".webm", ".mov"}
# CVRL's K400 recipe (Qian et al. 2021, Sec. 4.1): two 16-frame clips at stride 2.
SAMPLER = IntervalPairSampler((TemporalView("clip1", 16, 2), TemporalView("clip2", 16, 2)))


class PerViewDataset(PretrainDataset):
    """The baseline: every view opened and decoded on its own (same clips as decode-once)."""

    def _read(self, path: Path, rng: Any) -> list[dict[str, torch.Tensor]]:
        drawn: dict[str, Any] = {}
        views: dict[str, torch.Tensor] = {}
        for view in SAMPLER.views:

            def choose(n: int, fps: float | None, name: str = view.name) -> dict[str, Any]:
                if not drawn:  # the first open draws both clips, as decode-once does
                    drawn.update(self.sampler(n, rng, fps))
                return {name: drawn[name]}

            views.update(guarded_read(self.watchdog, path, choose, self.decode))
        return [{k: square_crop(c, rng) for k, c in views.items()}]


def source_files(videos: Path | None, copies: int, out: Path) -> list[Path]:
    """The benchmark's source set, laid out under ``out/videos``."""
    root = out / "videos" / "a"
    root.mkdir(parents=True)
    found = (
        sorted(p for p in videos.rglob("*") if p.suffix.lower() in VIDEO_EXT)
        if videos
        else [SHARED / name for name in SOURCES]
    )
    files = []
    for k in range(copies):
        for src in found:
            dst = root / f"{k:03d}_{src.name}"
            os.link(src, dst) if src.stat().st_dev == out.stat().st_dev else shutil.copy(src, dst)
            files.append(dst)
    return files


def as_index(files: list[Path]) -> VideoIndex:
    return VideoIndex(files[0].parent, tuple(VideoRecord(p, 0) for p in files), ("a",), ())


def clips_per_second(
    dataset: PretrainDataset, workers: int, samples: int, batch: int = 8
) -> tuple[float, DataLoader[Any]]:
    """Two views per sample; the first batch (worker start-up) is not timed."""
    sampler = EpochSampler(len(dataset.index), seed=0)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    while seen < samples:
        try:
            seen += next(it)["views"]["clip1"].shape[0]
        except StopIteration:
            sampler.set_epoch(sampler.epoch + 1)
            it = iter(loader)
    return 2 * seen / (time.perf_counter() - start), loader


def worker_rss_mb() -> float:
    """Resident memory of this process and its children (DataLoader workers), in MB."""
    total = 0
    me = os.getpid()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("Pid", "0")) == me or int(fields.get("PPid", "0")) == me:
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=Path, help="folder of source videos (default: shared)")
    parser.add_argument("--copies", type=int, default=8, help="copies of each source video")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--samples", type=int, default=48, help="timed samples per cell")
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--backend", default="decord", choices=["decord", "pyav"])
    parser.add_argument("--memory-clips", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ssvrl-loader-bench-") as tmp:
        out = Path(tmp)
        original = source_files(args.videos, args.copies, out)
        t0 = time.perf_counter()
        summary = prepare_dataset(
            out / "videos",
            out / "prepared",
            EncodeSettings(short_side=args.short_side, gop=16),
            workers=max(1, *args.workers),
            progress=False,
        )
        prep_s = time.perf_counter() - t0
        if summary.failed:
            raise SystemExit(f"prepare failed: {summary.failed[:3]}")
        prepared = [out / "prepared" / p.relative_to(out / "videos") for p in original]
        decode = DecodeConfig(args.backend, args.short_side, timeout=120)
        print(
            f"{len(original)} videos ({', '.join(SOURCES) if not args.videos else args.videos}),"
            f" CVRL 2 x 16 frames stride 2, short side {args.short_side}, backend "
            f"{args.backend}; prepare took {prep_s:.1f} s"
        )
        print("\n| files | decoding | workers | clips/s | vs original per-view |")
        print("|---|---|---|---|---|")
        fastest: tuple[float, DataLoader[Any] | None] = (0.0, None)
        for workers in args.workers:
            base = None
            for files_name, files in (("original", original), ("prepared", prepared)):
                for mode, cls in (("per-view", PerViewDataset), ("decode-once", PretrainDataset)):
                    bad = BadVideoLog(out / "bad", len(files), 0.5)
                    ds = cls(as_index(files), SAMPLER, decode, bad, seed=0)
                    rate, loader = clips_per_second(ds, workers, args.samples)
                    base = base or rate
                    print(
                        f"| {files_name} | {mode} | {workers} | {rate:.1f} | {rate / base:.2f}x |"
                    )
                    if rate > fastest[0]:
                        fastest = (rate, loader)
                    else:
                        del loader
        if args.memory_clips and fastest[1] is not None:
            memory_profile(fastest[1], args.memory_clips)


def memory_profile(loader: DataLoader[Any], clips: int, points: int = 5) -> None:
    """Resident memory (this process + workers) at ``points`` evenly spaced moments over
    ``clips`` more clips; the growth after the first point (warm-up) must stay small."""
    marks = [round(clips * (k + 1) / points) for k in range(points)]
    seen, rss = 0, [worker_rss_mb()]
    while marks:
        for batch in loader:
            seen += 2 * batch["views"]["clip1"].shape[0]
            while marks and seen >= marks[0]:
                marks.pop(0)
                rss.append(worker_rss_mb())
            if not marks:
                break
    steps = " -> ".join(f"{m:.0f}" for m in rss)
    print(
        f"\nresident memory (MB, main + workers) every {clips // points} clips: {steps}; "
        f"after the first {clips // points} clips: {rss[-1] - rss[1]:+.0f} MB"
    )

if __name__ == "__main__":
    main()
