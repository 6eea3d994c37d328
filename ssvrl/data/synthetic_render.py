"""Frame rendering for the synthetic motion dataset (see :mod:`ssvrl.data.synthetic`).

Everything is vectorised numpy over the whole ``(T, H, W)`` volume: each object is drawn by an
inverse coordinate transform (translate on a torus, rotate, scale) of the pixel grid into the
object's own ``(u, v)`` frame, where its shape and stripe texture are analytic functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from ssvrl.data.synthetic import SynthSpec


class Motion(NamedTuple):
    """One motion class: unit translation ``(dx, dy)`` (y points down), spin and zoom signs."""

    name: str
    dx: float
    dy: float
    spin: int  # +1 clockwise on screen, -1 counter-clockwise, 0 none
    zoom: int  # +1 expand, -1 shrink, 0 none


_D = float(np.sqrt(0.5))
MOTIONS: tuple[Motion, ...] = (
    Motion("MoveLeft", -1.0, 0.0, 0, 0),
    Motion("MoveRight", 1.0, 0.0, 0, 0),
    Motion("MoveUp", 0.0, -1.0, 0, 0),
    Motion("MoveDown", 0.0, 1.0, 0, 0),
    Motion("RotateClockwise", 0.0, 0.0, 1, 0),
    Motion("RotateCounterClockwise", 0.0, 0.0, -1, 0),
    Motion("MoveUpLeft", -_D, -_D, 0, 0),
    Motion("MoveUpRight", _D, -_D, 0, 0),
    Motion("MoveDownLeft", -_D, _D, 0, 0),
    Motion("MoveDownRight", _D, _D, 0, 0),
    Motion("Expand", 0.0, 0.0, 0, 1),
    Motion("Shrink", 0.0, 0.0, 0, -1),
)
NUM_SHAPES = 5  # ellipse, rectangle, triangle, cross, diamond
NUM_BACKGROUNDS = 4  # smooth noise, stripes, blobs, gradient
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class ObjectStyle:
    """Appearance of one object, shared by the clips of a group."""

    shape: int  # index in [0, NUM_SHAPES)
    axes: tuple[float, float]  # semi-axes (a, b) in px, a >= b
    colours: np.ndarray  # (2, 3) the two stripe colours, 0..255
    stripes: float  # stripe cycles across the object's long axis


@dataclass(frozen=True)
class SceneStyle:
    """Appearance of a scene (one UCF101-like group): background and objects."""

    bg_seed: int  # seeds the background texture function
    bg_kind: int  # index in [0, NUM_BACKGROUNDS)
    bg_colours: np.ndarray  # (2, 3) colours blended by the texture field
    objects: tuple[ObjectStyle, ...]


def draw_scene(rng: np.random.Generator, spec: SynthSpec) -> SceneStyle:
    """Draw a background and objects, independently of any class."""
    c0 = rng.uniform(0, 255, 3)
    c1 = c0 + spec.background_contrast * (rng.uniform(0, 255, 3) - c0)
    bg_mean = 0.5 * (c0 + c1)
    count = int(rng.integers(spec.objects[0], spec.objects[1] + 1))
    objects = tuple(_draw_object(rng, spec, bg_mean) for _ in range(count))
    return SceneStyle(
        int(rng.integers(2**31)), int(rng.integers(NUM_BACKGROUNDS)), np.stack([c0, c1]), objects
    )


def _draw_object(rng: np.random.Generator, spec: SynthSpec, bg_mean: np.ndarray) -> ObjectStyle:
    """One object whose main colour stands out from the background (also in grayscale)."""
    cand = rng.uniform(0, 255, (4, 3))  # (4, 3) candidate colours
    score = np.linalg.norm(cand - bg_mean, axis=1) + 2 * np.abs((cand - bg_mean) @ _LUMA)
    main = cand[int(np.argmax(score))]
    if main @ _LUMA > 128:
        second = main * rng.uniform(0.25, 0.55)
    else:
        second = main + (255 - main) * rng.uniform(0.45, 0.75)
    a = rng.uniform(*spec.object_size) * spec.size
    b = a * rng.uniform(0.5, 0.9)
    return ObjectStyle(
        int(rng.integers(NUM_SHAPES)),
        (a, b),
        np.stack([main, second]),
        float(rng.uniform(1.0, 2.5)),
    )


def _background(scene: SceneStyle, size: int, offset: np.ndarray) -> np.ndarray:
    """Static texture ``(H, W, 3)``: a [0, 1] field (seen from ``offset``) blending two colours."""
    rng = np.random.default_rng(scene.bg_seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    yy, xx = yy + offset[0], xx + offset[1]
    if scene.bg_kind in (0, 1):  # smooth noise: a few low frequencies; stripes: one higher one
        n, fmax = (6, 3.0) if scene.bg_kind == 0 else (1, 8.0)
        ang, freq, ph = rng.uniform(0, np.pi, n), rng.uniform(0.7, fmax, n), rng.uniform(0, 7, n)
        proj = np.cos(ang)[:, None, None] * xx + np.sin(ang)[:, None, None] * yy
        field = np.sin(2 * np.pi * freq[:, None, None] * proj + ph[:, None, None]).sum(0)
    elif scene.bg_kind == 2:  # blobs
        n = int(rng.integers(3, 9))
        cy, cx = rng.uniform(-0.2, 1.2, n), rng.uniform(-0.2, 1.2, n)
        sig = rng.uniform(0.05, 0.2, n)
        d2 = (yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2
        field = np.exp(-d2 / (2 * sig[:, None, None] ** 2)).sum(0)
    else:  # gradient
        ang = rng.uniform(0, 2 * np.pi)  # type: ignore[assignment]
        field = np.cos(ang) * xx + np.sin(ang) * yy
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    c = scene.bg_colours
    return (c[0] * (1 - field[..., None]) + c[1] * field[..., None]).astype(np.float32)


def _shape_distance(shape: int, u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Normalised distance: < 1 inside the shape, 1 on its border (object frame ``u, v``)."""
    au, av = np.abs(u) / a, np.abs(v) / b
    if shape == 0:
        return np.sqrt(au**2 + av**2)  # ellipse
    if shape == 1:
        return np.maximum(au, av)  # rectangle
    if shape == 2:
        return np.maximum(-u / a, u / a + 2 * av)  # triangle pointing along +u
    if shape == 3:
        return np.minimum(np.maximum(au, av / 0.35), np.maximum(au / 0.35, av))  # cross
    return au + av  # diamond


@dataclass(frozen=True)
class ClipDraws:
    """Per-clip random draws for a scene with ``K`` objects (the class is applied at render)."""

    offset: np.ndarray  # (2,) background viewpoint shift, fraction of the frame
    jitter: np.ndarray  # (K + 1, 3) colour shifts: row 0 background, then one per object
    size: np.ndarray  # (K,) object size factors
    pos: np.ndarray  # (K, 2) start centres (y, x) in px
    theta: np.ndarray  # (K,) start orientations, radians
    speed: np.ndarray  # (K,) px per frame (translation classes)
    omega: np.ndarray  # (K,) radians per frame (rotation classes)
    rate: np.ndarray  # (K,) d(log scale) per frame (Expand / Shrink)
    t0: np.ndarray  # (K,) frame at which the scale is 1 (Expand / Shrink)
    gain: np.ndarray  # (T,) per-frame brightness flicker
    noise_seed: int  # seeds the per-pixel camera noise


def draw_clip(rng: np.random.Generator, scene: SceneStyle, spec: SynthSpec) -> ClipDraws:
    """Draw a clip's viewpoint, jitters, start positions and speeds, independently of the class."""
    k = len(scene.objects)
    return ClipDraws(
        offset=rng.uniform(-0.25, 0.25, 2),
        jitter=rng.uniform(-12, 12, (k + 1, 3)),
        size=rng.uniform(0.85, 1.15, k),
        pos=rng.uniform(0, spec.size, (k, 2)),
        theta=rng.uniform(0, 2 * np.pi, k),
        speed=rng.uniform(*spec.speed, k),
        omega=np.deg2rad(rng.uniform(*spec.angular_speed, k)),
        rate=rng.uniform(*spec.scale_rate, k),
        t0=rng.uniform(0, spec.frames - 1, k),
        gain=1 + spec.flicker * rng.standard_normal(spec.frames),
        noise_seed=int(rng.integers(2**31)),
    )


def _trajectories(motion: Motion, clip: ClipDraws, frames: int) -> tuple[np.ndarray, ...]:
    """Per-object centre x, y, angle and scale over time, each ``(K, T)``."""
    t = np.arange(frames, dtype=np.float64)[None]  # (1, T)
    cx = clip.pos[:, 1:2] + motion.dx * clip.speed[:, None] * t
    cy = clip.pos[:, 0:1] + motion.dy * clip.speed[:, None] * t
    theta = clip.theta[:, None] + motion.spin * clip.omega[:, None] * t
    scale = np.exp(motion.zoom * clip.rate[:, None] * (t - clip.t0[:, None]))
    return cx, cy, theta, scale


def _paint_object(
    frames: np.ndarray, obj: ObjectStyle, i: int, traj: tuple[np.ndarray, ...], clip: ClipDraws
) -> None:
    """Alpha-blend object ``i`` into ``frames`` ``(T, H, W, 3)`` in place, wrapping at borders."""
    size = frames.shape[1]
    cx, cy, theta, scale = (x[i][:, None, None].astype(np.float32) for x in traj)  # (T, 1, 1)
    grid = np.arange(size, dtype=np.float32)
    dx = (grid[None, None, :] - cx + size / 2) % size - size / 2  # (T, 1, W)
    dy = (grid[None, :, None] - cy + size / 2) % size - size / 2  # (T, H, 1)
    cos, sin = np.cos(theta), np.sin(theta)
    u, v = (cos * dx + sin * dy) / scale, (cos * dy - sin * dx) / scale  # (T, H, W)
    a, b = (ax * float(clip.size[i]) for ax in obj.axes)
    dist = _shape_distance(obj.shape, u, v, a, b)
    alpha = np.clip(0.5 + (1 - dist) * b * scale, 0, 1)  # (T, H, W), ~1 px soft edge
    inside = alpha > 0  # blend only the covered pixels
    al, ul = alpha[inside][:, None], u[inside][:, None]  # (N, 1)
    stripe = 0.5 + 0.5 * np.sin(np.pi * obj.stripes * (ul / a + 1))
    col = np.clip(obj.colours + clip.jitter[i + 1], 0, 255).astype(np.float32)  # (2, 3)
    frames[inside] = frames[inside] * (1 - al) + al * (col[0] * (1 - stripe) + col[1] * stripe)


def render_clip(cls: int, scene: SceneStyle, clip: ClipDraws, spec: SynthSpec) -> np.ndarray:
    """Render class ``cls`` (0-based) of ``scene`` with ``clip``'s draws: uint8 (T, H, W, 3)."""
    bg = _background(scene, spec.size, clip.offset) + clip.jitter[0].astype(np.float32)
    frames = np.repeat(np.clip(bg, 0, 255)[None], spec.frames, axis=0)  # (T, H, W, 3)
    traj = _trajectories(MOTIONS[cls], clip, spec.frames)
    for i, obj in enumerate(scene.objects):
        _paint_object(frames, obj, i, traj, clip)
    frames *= clip.gain.astype(np.float32)[:, None, None, None]
    if spec.noise > 0:
        noise_rng = np.random.default_rng(clip.noise_seed)
        frames += spec.noise * noise_rng.standard_normal(frames.shape, dtype=np.float32)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)
