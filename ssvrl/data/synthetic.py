"""Synthetic motion videos written as real video files in the UCF101 layout.

The quickstart's dataset: small enough to pretrain (CVRL) and linear-probe on a CPU in minutes,
and built so that **only motion** identifies the class.

Classes (``class_names(n)`` takes the first ``n``; the default 6 are the first six; 1-based
labels as in ``classInd.txt``)::

     1 MoveLeft                  objects translate left, wrapping around the frame
     2 MoveRight                 ... right
     3 MoveUp                    ... up
     4 MoveDown                  ... down
     5 RotateClockwise           objects spin in place, clockwise on screen
     6 RotateCounterClockwise    ... counter-clockwise
     7 MoveUpLeft                diagonal translation (also 8 MoveUpRight, 9 MoveDownLeft,
                                 10 MoveDownRight)
    11 Expand                    objects grow in place (exponentially)
    12 Shrink                    ... shrink

Why this design:

* **Motion-only classes.** The motion is constant for the whole video (translation wraps around
  on a torus instead of bouncing, so "left" never looks like "right"), hence every sub-clip,
  e.g. 8 frames at stride 4 (29 frames), shows the class unambiguously.
* **Appearance independent of class.** Background, shapes (ellipse, rectangle, triangle, cross,
  diamond), colours, stripe textures, sizes, object count (``spec.objects``), start positions and
  orientations are drawn from the same distributions for every class; any single frame is
  uninformative (up to chance), so a model must use time. Expand/Shrink sizes follow
  ``exp(+-rate * (t - t0))`` with ``t0`` uniform, so sizes are symmetric between the two classes
  when the frame index is unknown.
* **A static-background shortcut.** Each video has a static textured background (smooth noise,
  stripes, blobs or a gradient in two random colours). Two clips of one video share it, so a
  contrastive objective can match clips by background alone; objectives such as FAME and MCL
  exist to remove this shortcut. Mild per-pixel noise and brightness flicker act as camera noise.

Layout (exactly like UCF101; ``XX`` = group, ``YY`` = clip in the group, both from 01)::

    OUT/videos/<ClassName>/v_<ClassName>_gXX_cYY.avi      (or .mp4 with container="mp4")
    OUT/annotations/classInd.txt                          "1 MoveLeft"
    OUT/annotations/trainlist0{1,2,3}.txt                 "MoveLeft/v_MoveLeft_g08_c01.avi 1"
    OUT/annotations/testlist0{1,2,3}.txt                  "MoveLeft/v_MoveLeft_g01_c01.avi"
    OUT/synthetic_spec.json                               the SynthSpec used (not in UCF101)

The annotation files use CRLF line endings like the official ones. As in UCF101 a group is one
"scene": its clips share background and object appearance (each clip re-draws viewpoint, small
colour and size jitter, positions and speeds), so splits are made by group and test scenes are
unseen. By default (``shared_scenes=True``) scene ``g`` is the same in every class, like KTH's
subjects who each perform every action: appearance then carries exactly no class information
even in a finite sample, and for a contrastive objective the other classes' videos of a scene
are negatives that differ by motion only, which makes motion worth learning. With
``shared_scenes=False`` each (class, group) has its own scene, as in UCF101.

Splits: UCF101 holds out groups 1-7, 8-14, 15-21 of its 25 for splits 1-3; here split ``k`` holds
out ``n = max(1, min(round(7 * groups / 25), groups // 3))`` consecutive groups starting at group
``(k - 1) * n + 1`` (wrapping when ``groups < 3``). The default, 6 classes x 20 groups x
3 clips = 360 videos, tests groups 1-6, 7-12, 13-18: 252 train / 108 test videos per split
(many small groups rather than a few large ones: more distinct scenes to train and test on).

Videos are encoded with PyAV at ``fps`` frames/s: MPEG-4 Part 2 in AVI (like UCF101's XviD) at
quantiser 2, or H.264 (libx264, CRF 12) in MP4. Everything is deterministic in ``spec.seed``:
scene ``g`` (1-based) draws from ``default_rng([seed, g])`` (``[seed, c, g]`` for class ``c``,
0-based, when scenes are not shared) and clip ``j`` of class ``c`` from
``default_rng([seed, c, g, j])``; encoding is single-threaded, so the bytes repeat too.

Known reader quirk: decord2 3.4 returns frames with a wrong channel count for some widths
(16, 24, 32, 48, 96, 144 px; any codec), while 40, 56, 64, 72, 80, 112 and 128 decode fine.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import av
import numpy as np

from ssvrl.data.synthetic_dots import render_dots
from ssvrl.data.synthetic_render import MOTIONS, draw_clip, draw_scene, render_clip

__all__ = [
    "MOTIONS",
    "SynthSpec",
    "SynthSummary",
    "class_names",
    "encode_video",
    "render_video",
    "split_groups",
    "write_synthetic_dataset",
]


@dataclass(frozen=True)
class SynthSpec:
    """What to generate; the default (360 videos) fits the CPU quickstart."""

    num_classes: int = 6  # first n of MOTIONS (6..12)
    groups: int = 20  # scenes per class, like UCF101's 25 groups
    clips_per_group: int = 3  # clips per scene (UCF101: 4-7)
    frames: int = 64  # frames per video (> 29 so two 8x4 clips fit at different times)
    size: int = 64  # square frames, H = W = size (decord: avoid 16, 24, 32, 48, 96, 144)
    fps: int = 25
    seed: int = 0
    container: Literal["avi", "mp4"] = "avi"  # avi: mpeg4 (XviD-like); mp4: libx264
    objects: tuple[int, int] = (1, 3)  # inclusive range of objects per scene, all share the motion
    object_size: tuple[float, float] = (0.10, 0.18)  # long semi-axis as a fraction of size
    speed: tuple[float, float] = (0.75, 1.5)  # translation speed range, px per frame
    angular_speed: tuple[float, float] = (2.5, 5.0)  # rotation speed range, degrees per frame
    scale_rate: tuple[float, float] = (0.008, 0.012)  # Expand/Shrink d(log size)/d(frame) range
    background_contrast: float = 0.6  # 0: flat background, 1: two fully independent colours
    noise: float = 2.0  # std of per-pixel Gaussian camera noise (0..255 scale)
    flicker: float = 0.0  # objects style: per-frame gain std (0.02 stalled a small 3D CNN)
    shared_scenes: bool = True  # True: group g is one scene in every class; False: per class
    # "dots" (default): a random-dot field moving with the class motion over a weakly textured
    # static background (see synthetic_dots.py); "objects": 1-3 large textured objects.
    style: Literal["dots", "objects"] = "dots"
    dots: tuple[int, int] = (25, 45)  # inclusive range of dots per video (dots style)
    dot_radius: tuple[float, float] = (2.0, 3.5)  # px
    dot_speed: tuple[float, float] = (0.6, 1.2)  # px per frame (translation classes)
    dot_angular_speed: tuple[float, float] = (2.0, 4.0)  # degrees per frame (rotation classes)
    background_mix: float = 0.12  # dots style: 0 = flat grey, 1 = the full background texture

    def __post_init__(self) -> None:
        if not 1 <= self.num_classes <= len(MOTIONS):
            raise ValueError(f"num_classes must be in 1..{len(MOTIONS)}, got {self.num_classes}")
        if self.groups < 2 or self.clips_per_group < 1 or self.frames < 2 or self.size < 8:
            raise ValueError(f"need groups >= 2, clips >= 1, frames >= 2, size >= 8: {self}")
        if self.container not in ("avi", "mp4"):
            raise ValueError(f"container must be 'avi' or 'mp4', got {self.container!r}")


@dataclass
class SynthSummary:
    """What :func:`write_synthetic_dataset` wrote."""

    out: Path
    num_videos: int
    classes: list[str]
    train: dict[int, int] = field(default_factory=dict)  # split -> number of training videos
    test: dict[int, int] = field(default_factory=dict)  # split -> number of test videos
    seconds: float = 0.0


def class_names(num_classes: int) -> list[str]:
    """The first ``num_classes`` CamelCase class names, e.g. ``["MoveLeft", "MoveRight", ...]``."""
    if not 1 <= num_classes <= len(MOTIONS):
        raise ValueError(f"num_classes must be in 1..{len(MOTIONS)}, got {num_classes}")
    return [m.name for m in MOTIONS[:num_classes]]


def render_video(cls: int, rng: np.random.Generator, spec: SynthSpec) -> np.ndarray:
    """One video of class ``cls`` (0-based) with a fresh scene from ``rng``: uint8 (T, H, W, 3)."""
    if spec.style == "dots":
        return render_dots(cls, rng, rng, spec)
    scene = draw_scene(rng, spec)
    return render_clip(cls, scene, draw_clip(rng, scene, spec), spec)


def split_groups(groups: int, split: int) -> set[int]:
    """The 1-based test groups of ``split`` (1..3), the UCF101 scheme scaled to ``groups``."""
    n = max(1, min(round(7 * groups / 25), groups // 3))
    return {((split - 1) * n + i) % groups + 1 for i in range(n)}


def _video_relpath(name: str, group: int, clip: int, container: str) -> str:
    """``<Class>/v_<Class>_gXX_cYY.<ext>`` with 1-based group and clip."""
    return f"{name}/v_{name}_g{group:02d}_c{clip:02d}.{container}"


def encode_video(
    frames: np.ndarray, path: str | Path, fps: int = 25, container: str = "avi"
) -> None:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames: mpeg4 q=2 for avi, libx264 CRF 12 for mp4."""
    with av.open(str(path), "w") as out:
        if container == "avi":
            stream = out.add_stream("mpeg4", rate=fps)
            stream.options = {"flags": "+qscale", "global_quality": str(2 * 118)}  # -q:v 2
        else:
            stream = out.add_stream("libx264", rate=fps)
            stream.options = {"crf": "12", "preset": "veryfast"}
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # deterministic bytes, and workers are processes
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def _write_one(job: tuple[int, int, int, str, SynthSpec]) -> None:
    """Render and encode one video; ``job`` = (class, 1-based group, 1-based clip, path, spec)."""
    cls, group, clip, path, spec = job
    scene_key = [spec.seed, group] if spec.shared_scenes else [spec.seed, cls, group]
    if spec.style == "dots":
        rng = np.random.default_rng([spec.seed, cls, group, clip])
        frames = render_dots(cls, np.random.default_rng(scene_key), rng, spec)
        encode_video(frames, path, spec.fps, spec.container)
        return
    scene = draw_scene(np.random.default_rng(scene_key), spec)
    draws = draw_clip(np.random.default_rng([spec.seed, cls, group, clip]), scene, spec)
    encode_video(render_clip(cls, scene, draws, spec), path, spec.fps, spec.container)


def _write_lines(path: Path, lines: list[str]) -> None:
    """Write ``lines`` with CRLF endings (the official UCF101 files use CRLF, last line too)."""
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())


def _write_annotations(out: Path, names: list[str], spec: SynthSpec) -> SynthSummary:
    """Write classInd and the three train/test lists; return the per-split counts."""
    ann, summary = out / "annotations", SynthSummary(out, 0, names)
    ann.mkdir(parents=True, exist_ok=True)
    _write_lines(ann / "classInd.txt", [f"{i + 1} {n}" for i, n in enumerate(names)])
    for split in (1, 2, 3):
        test_groups, train, test = split_groups(spec.groups, split), [], []
        for c, name in enumerate(names):
            for g in range(1, spec.groups + 1):
                for j in range(1, spec.clips_per_group + 1):
                    rel = _video_relpath(name, g, j, spec.container)
                    if g in test_groups:
                        test.append(rel)
                    else:
                        train.append(f"{rel} {c + 1}")
        _write_lines(ann / f"trainlist0{split}.txt", train)
        _write_lines(ann / f"testlist0{split}.txt", test)
        summary.train[split], summary.test[split] = len(train), len(test)
    return summary


def _run_jobs(
    jobs: list[tuple[int, int, int, str, SynthSpec]], workers: int, progress: bool
) -> None:
    """Run :func:`_write_one` over ``jobs``, in a process pool when ``workers > 1``."""

    def report(done: int) -> None:
        if progress and (done % 50 == 0 or done == len(jobs)):
            print(f"synthetic: {done}/{len(jobs)} videos", file=sys.stderr, flush=True)

    if workers <= 1:
        for done, job in enumerate(jobs, 1):
            _write_one(job)
            report(done)
        return
    # fork: no re-import of the caller's __main__ (scripts without a main guard keep working)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        chunk = max(1, len(jobs) // (8 * workers))
        for done, _ in enumerate(pool.map(_write_one, jobs, chunksize=chunk), 1):
            report(done)


def write_synthetic_dataset(
    out: str | Path,
    spec: SynthSpec = SynthSpec(),
    workers: int | None = None,
    progress: bool = False,
) -> SynthSummary:
    """Render and encode the whole dataset under ``out`` (see the module docstring for the layout).

    ``workers``: processes (default: all CPUs, at most 8; 0 or 1 runs in this process).
    Existing files are overwritten. Returns counts and the wall time in seconds.
    """
    start, out = time.perf_counter(), Path(out)
    names = class_names(spec.num_classes)
    jobs = []
    for c, name in enumerate(names):
        (out / "videos" / name).mkdir(parents=True, exist_ok=True)
        for g in range(1, spec.groups + 1):
            for j in range(1, spec.clips_per_group + 1):
                path = out / "videos" / _video_relpath(name, g, j, spec.container)
                jobs.append((c, g, j, str(path), spec))
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    _run_jobs(jobs, min(workers, len(jobs)), progress)
    summary = _write_annotations(out, names, spec)
    (out / "synthetic_spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    summary.num_videos, summary.seconds = len(jobs), time.perf_counter() - start
    return summary
