"""Tests for the synthetic motion dataset: layout, decodable files, determinism, motion-only."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ssvrl.data.synthetic import (
    MOTIONS,
    SynthSpec,
    class_names,
    render_video,
    split_groups,
    write_synthetic_dataset,
)

decord = pytest.importorskip("decord")

TINY = SynthSpec(groups=2, clips_per_group=2, frames=32, size=40, seed=3)  # decord: see SynthSpec


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-class x 2-group x 2-clip dataset written with two worker processes."""
    out = tmp_path_factory.mktemp("synth")
    summary = write_synthetic_dataset(out, TINY, workers=2)
    assert summary.num_videos == 24 and summary.classes == class_names(6)
    assert summary.train == {1: 12, 2: 12, 3: 12} and summary.test == {1: 12, 2: 12, 3: 12}
    return out


def _decode(path: Path) -> np.ndarray:
    """All frames of a video file with decord: uint8 (T, H, W, 3)."""
    reader = decord.VideoReader(str(path))
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def _luma(video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W) float64 grayscale."""
    return video.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _motion(video: np.ndarray) -> np.ndarray:
    """Least-squares optical flow of one object: [vx, vy, omega, dlog(scale)] per frame.

    Brightness constancy ``I_t = -(I_x u + I_y v)`` with ``(u, v)`` = translation + rotation
    + scaling about the object's (circular) centroid; y points down, so omega > 0 is clockwise.
    """
    g = _luma(video)  # (T, H, W)
    h, w = g.shape[1:]
    std = g.std(0)  # (H, W) large where the object passes
    phase = np.exp(2j * np.pi * np.arange(w) / w)
    cy = np.angle((std.sum(1) * phase).sum()) % (2 * np.pi) * h / (2 * np.pi)
    cx = np.angle((std.sum(0) * phase).sum()) % (2 * np.pi) * w / (2 * np.pi)
    x = np.broadcast_to((np.arange(w) - cx + w / 2) % w - w / 2, (h, w))
    y = np.broadcast_to(((np.arange(h) - cy + h / 2) % h - h / 2)[:, None], (h, w))
    it = (g[2:] - g[:-2]) / 2  # (T-2, H, W)
    gy, gx = np.gradient(g[1:-1], axis=(1, 2))
    feats = np.stack([gx, gy, x * gy - y * gx, x * gx + y * gy], -1).reshape(-1, 4)
    keep = np.broadcast_to(std > 1.0, it.shape).reshape(-1)
    return np.linalg.lstsq(feats[keep], -it.reshape(-1)[keep], rcond=None)[0]


def test_class_names() -> None:
    assert class_names(6) == [
        "MoveLeft",
        "MoveRight",
        "MoveUp",
        "MoveDown",
        "RotateClockwise",
        "RotateCounterClockwise",
    ]
    assert len(class_names(len(MOTIONS))) == len(set(class_names(len(MOTIONS)))) >= 8
    with pytest.raises(ValueError):
        class_names(len(MOTIONS) + 1)
    with pytest.raises(ValueError):
        SynthSpec(groups=1)


def test_split_groups_follow_ucf101() -> None:
    assert [split_groups(25, k) for k in (1, 2, 3)] == [
        set(range(1, 8)),
        set(range(8, 15)),
        set(range(15, 22)),
    ]
    assert [split_groups(20, k) for k in (1, 2, 3)] == [
        set(range(1, 7)),
        set(range(7, 13)),
        set(range(13, 19)),
    ]
    assert split_groups(2, 1) == {1} and split_groups(2, 2) == {2}


def test_layout_and_crlf_annotations(tiny: Path) -> None:
    ann = tiny / "annotations"
    names = class_names(6)
    assert (ann / "classInd.txt").read_bytes() == "".join(
        f"{i + 1} {n}\r\n" for i, n in enumerate(names)
    ).encode()
    videos = {p.relative_to(tiny / "videos").as_posix() for p in (tiny / "videos").rglob("*.avi")}
    assert len(videos) == 24 and "MoveLeft/v_MoveLeft_g01_c01.avi" in videos
    for split in (1, 2, 3):
        train_raw = (ann / f"trainlist0{split}.txt").read_bytes()
        test_raw = (ann / f"testlist0{split}.txt").read_bytes()
        for raw in (train_raw, test_raw):
            assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
        train = [line.split(" ") for line in train_raw.decode().splitlines()]
        test = test_raw.decode().splitlines()
        assert all(names[int(label) - 1] == rel.split("/")[0] for rel, label in train)
        assert {rel for rel, _ in train} | set(test) == videos and len(train) + len(test) == 24
        group = lambda rel: rel.split("_g")[1][:2]  # noqa: E731
        assert not {group(rel) for rel, _ in train} & {group(rel) for rel in test}


def test_videos_decode_with_decord(tiny: Path) -> None:
    for path in sorted((tiny / "videos").rglob("*.avi")):
        reader = decord.VideoReader(str(path))
        assert len(reader) == TINY.frames
        assert reader[0].asnumpy().shape == (TINY.size, TINY.size, 3)


def test_encoded_frames_match_render(tiny: Path) -> None:
    """Decoded luma is close to the rendered one (quantiser 2 keeps small dots).

    Colour is looser: yuv420p halves chroma resolution, which blurs small coloured dots.
    """
    from ssvrl.data.synthetic_dots import render_dots

    scene_rng = np.random.default_rng([TINY.seed, 2])  # scenes shared by classes
    rendered = render_dots(4, scene_rng, np.random.default_rng([TINY.seed, 4, 2, 1]), TINY)
    decoded = _decode(tiny / "videos/RotateClockwise/v_RotateClockwise_g02_c01.avi")
    assert np.abs(_luma(decoded) - _luma(rendered)).mean() < 4.0
    assert np.abs(decoded.astype(float) - rendered).mean() < 14.0


def test_encoded_objects_match_render(tmp_path: Path) -> None:
    """The "objects" style: decoded luma close to the render, colour looser (yuv420p)."""
    from ssvrl.data.synthetic_render import draw_clip, draw_scene, render_clip

    spec = replace(TINY, style="objects", num_classes=5, groups=2, clips_per_group=1)
    write_synthetic_dataset(tmp_path, spec, workers=1)
    scene = draw_scene(np.random.default_rng([spec.seed, 2]), spec)  # scenes shared by classes
    clip = draw_clip(np.random.default_rng([spec.seed, 4, 2, 1]), scene, spec)
    rendered = render_clip(4, scene, clip, spec)
    decoded = _decode(tmp_path / "videos/RotateClockwise/v_RotateClockwise_g02_c01.avi")
    assert np.abs(_luma(decoded) - _luma(rendered)).mean() < 3.0
    assert np.abs(decoded.astype(float) - rendered).mean() < 12.0


@pytest.mark.parametrize("cls", range(len(MOTIONS)))
def test_dot_tracks_follow_the_class_motion(cls: int) -> None:
    """Every dot moves as its class says: direction, spin sense, or radial in/out flow."""
    from ssvrl.data.synthetic_dots import dot_tracks

    spec, motion = SynthSpec(num_classes=len(MOTIONS)), MOTIONS[cls]
    ys, xs = dot_tracks(motion, np.random.default_rng(cls), spec, 30)  # (T, K)
    vy, vx = np.diff(ys, axis=0), np.diff(xs, axis=0)  # (T-1, K) px per frame
    if not motion.spin and not motion.zoom:
        speed = np.hypot(vx, vy)
        along = (vx * motion.dx + vy * motion.dy) / speed
        assert np.allclose(along, 1.0, atol=1e-4) and 0.5 < speed.mean() < 1.5
        return
    cy, cx = ys.mean(), xs.mean()  # the flow's centre, up to sampling noise
    ry, rx = ys[:-1] - cy, xs[:-1] - cx
    if motion.spin:  # cross product: > 0 is clockwise on screen (y points down)
        assert np.mean(np.sign(rx * vy - ry * vx) == motion.spin) > 0.9
    else:  # radial component, ignoring the wrap-around jumps
        radial = (rx * vx + ry * vy) / np.hypot(rx, ry).clip(1e-3)
        small = np.abs(radial) < 5
        assert np.mean(np.sign(radial[small]) == motion.zoom) > 0.9


def test_deterministic_in_seed(tiny: Path, tmp_path: Path) -> None:
    spec = replace(TINY, num_classes=1, groups=2, clips_per_group=1)
    write_synthetic_dataset(tmp_path / "a", spec, workers=1)
    write_synthetic_dataset(tmp_path / "b", replace(spec, seed=spec.seed + 1), workers=1)
    rel = "videos/MoveLeft/v_MoveLeft_g02_c01.avi"
    same, other = _decode(tiny / rel), _decode(tmp_path / "a" / rel)
    assert np.array_equal(same, other)
    assert (tiny / rel).read_bytes() == (tmp_path / "a" / rel).read_bytes()
    assert np.abs(same.astype(float) - _decode(tmp_path / "b" / rel)).mean() > 5.0


def test_mp4_container(tmp_path: Path) -> None:
    spec = replace(TINY, num_classes=2, groups=2, clips_per_group=1, container="mp4")
    summary = write_synthetic_dataset(tmp_path, spec, workers=0)
    path = tmp_path / "videos/MoveRight/v_MoveRight_g01_c01.mp4"
    assert summary.num_videos == 4 and _decode(path).shape == (spec.frames, spec.size, spec.size, 3)
    assert (
        "MoveRight/v_MoveRight_g01_c01.mp4 2"
        in (tmp_path / "annotations/trainlist02.txt").read_text()
    )


@pytest.mark.parametrize("cls", range(len(MOTIONS)))
def test_class_is_recoverable_from_motion(cls: int) -> None:
    """The estimated flow of a lone object matches the class's direction, spin or zoom."""
    spec = SynthSpec(num_classes=len(MOTIONS), objects=(1, 1), noise=0.0, flicker=0.0, frames=16,
                     style="objects")
    motion = MOTIONS[cls]
    for seed in range(4):
        vx, vy, omega, zoom = _motion(render_video(cls, np.random.default_rng(seed), spec))
        if motion.spin:
            assert np.rad2deg(omega) * motion.spin > 1.5 and np.hypot(vx, vy) < 0.5
        elif motion.zoom:
            assert zoom * motion.zoom > 0.005 and np.hypot(vx, vy) < 0.5
        else:
            assert vx * motion.dx + vy * motion.dy > 0.9 * np.hypot(vx, vy) > 0.5
            assert abs(np.rad2deg(omega)) < 0.5


def test_appearance_does_not_predict_class() -> None:
    """Per-class mean colours (whole frame and background corner) are within the noise."""
    spec = SynthSpec(size=32, frames=8)
    stats = np.array(
        [
            [
                np.concatenate([v[0].mean((0, 1)), v[:, :4, :4].mean((0, 1, 2))])
                for v in (render_video(c, np.random.default_rng([c, i]), spec) for i in range(40))
            ]
            for c in range(6)
        ]
    )  # (6, 40, 6)
    spread = stats.reshape(-1, 6).std(0)  # per-statistic spread across all videos
    deviation = np.abs(stats.mean(1) - stats.mean((0, 1))) / spread  # (6, 6) in units of spread
    assert deviation.max() < 0.6  # the standard error of a class mean is 1/sqrt(40) = 0.16


def test_render_video_shape_and_dtype() -> None:
    spec = SynthSpec(num_classes=12, size=40, frames=30)
    video = render_video(11, np.random.default_rng(0), spec)
    assert video.shape == (30, 40, 40, 3) and video.dtype == np.uint8
    assert np.array_equal(video, render_video(11, np.random.default_rng(0), spec))


def test_groups_share_scenes_across_classes(tmp_path: Path) -> None:
    """Group g is one scene in every class (shared_scenes=True): the static background (the
    temporal median; a single small dot moves away) is the same across classes, not across
    groups."""
    spec = replace(TINY, num_classes=2, groups=2, clips_per_group=1, dots=(1, 1),
                   dot_radius=(1.0, 1.5), noise=0.0, background_mix=0.5)
    write_synthetic_dataset(tmp_path, spec, workers=1)

    def background(name: str, group: int) -> np.ndarray:
        video = _decode(tmp_path / f"videos/{name}/v_{name}_g{group:02d}_c01.avi").astype(float)
        return np.median(video, axis=0)  # (H, W, 3)

    same = np.abs(background("MoveLeft", 1) - background("MoveRight", 1)).mean()
    other = np.abs(background("MoveLeft", 1) - background("MoveLeft", 2)).mean()
    assert same < 0.25 * other and other > 3.0


def test_dot_layout_of_a_frame_does_not_reveal_the_class() -> None:
    """Dot coverage in rings around the centre is the same for every class (no density leak:
    rotation fills a disk larger than the frame without wrapping; radial flow is area-uniform)."""
    from ssvrl.data.synthetic_dots import dot_count, dot_tracks, splat

    spec = SynthSpec(num_classes=len(MOTIONS))
    H = spec.size
    yy, xx = np.mgrid[0:H, 0:H]
    rr = np.hypot(yy - H / 2 + 0.5, xx - H / 2 + 0.5)
    rings = [(rr >= lo) & (rr < hi) for lo, hi in [(0, 10), (10, 20), (20, 32), (32, 99)]]
    profiles = []
    for c, motion in enumerate(MOTIONS):
        cover = []
        for s in range(30):
            rng = np.random.default_rng([s, c])
            k = dot_count(motion, int(rng.integers(spec.dots[0], spec.dots[1] + 1)))
            ys, xs = dot_tracks(motion, rng, spec, k)
            radius = rng.uniform(*spec.dot_radius, k).astype(np.float32)
            wrap = motion.spin == 0 and motion.zoom == 0
            a, _ = splat(ys[::16], xs[::16], radius, H, wrap=wrap)  # (4, H, W, 1)
            cover.append([(a[..., 0] > 0)[:, r].mean() for r in rings])
        profiles.append(np.mean(cover, axis=0))
    profiles = np.array(profiles)  # (classes, rings)
    assert np.abs(profiles - profiles.mean(axis=0)).max() < 0.05
