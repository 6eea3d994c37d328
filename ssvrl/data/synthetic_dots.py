"""The "dots" style of the synthetic motion dataset: a random-dot field over a static background.

Every video is a field of small dots (random colours and sizes drawn per dot, from one
distribution for all classes) that moves coherently with the class motion: translation on a
torus, rotation about a point near the centre, or radial flow for Expand / Shrink (log-radius
wrapping, so dots stream out of / into the centre for the whole video). A dot pattern carries no
class information and, unlike a few large textured objects, almost no instance information
either: two clips of one video share the background and the motion, not a memorable object.
That is what lets a contrastive objective (CVRL) learn motion here, while the static textured
background stays a shortcut for it to fall into (``background_mix`` sets its strength; FAME and
MCL target it).

Why not objects: with 1-3 large textured objects per video, CVRL solved instance discrimination
by object appearance and background and its linear probe stayed at chance (measured, see the
README); with dots on a flat grey background it went from 62% (random init) to 97%.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ssvrl.data.synthetic_render import MOTIONS, Motion, _background, draw_scene

if TYPE_CHECKING:
    from ssvrl.data.synthetic import SynthSpec

GREY = 110.0  # the background's mean level (0..255), shared by every video


DISK = 0.9  # radius of the rotating / radial dot disk, in frame sizes: covers every corner


def dot_count(motion: Motion, count: int) -> int:
    """Dots to draw so that the density in the frame is the same for every class.

    Translation fills the ``H x H`` torus; rotation and radial flow fill a disk of radius
    ``DISK * H`` around a point near the centre, of which the frame sees ``H^2 / (pi (DISK H)^2)``.
    """
    if motion.spin == 0 and motion.zoom == 0:
        return count
    return int(round(count * np.pi * DISK**2))


def dot_tracks(
    motion: Motion, rng: np.random.Generator, spec: SynthSpec, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dot centres ``(ys, xs)``, each ``(T, K)`` in pixels, following ``motion``.

    Every class keeps the dots uniformly spread at every frame, so a single frame's dot layout
    says nothing about the class: translation moves a uniform field on a torus; rotation turns a
    uniform disk; radial flow moves each dot's squared radius at a constant rate (area-uniform)
    and wraps it within the disk (dots stream out of / into the centre).
    """
    T, H = spec.frames, spec.size
    t = np.arange(T, dtype=np.float32)[:, None]  # (T, 1)
    if motion.spin == 0 and motion.zoom == 0:  # translation on a torus
        p0 = rng.uniform(0, H, (count, 2)).astype(np.float32)
        v = np.float32(rng.uniform(*spec.dot_speed))
        return p0[None, :, 0] + motion.dy * v * t, p0[None, :, 1] + motion.dx * v * t
    centre = H / 2 + rng.uniform(-0.1, 0.1, 2) * H
    ang0 = rng.uniform(0, 2 * np.pi, count)
    R2 = (DISK * H) ** 2
    if motion.spin != 0:  # rotation, radius fixed per dot
        radius = np.sqrt(rng.uniform(0, R2, count))
        w = np.deg2rad(rng.uniform(*spec.dot_angular_speed)) * motion.spin
        ang = ang0[None] + w * t  # (T, K)
        rad = np.broadcast_to(radius[None], ang.shape)
    else:  # radial flow: r^2 moves linearly (dr/dt = v at r = H/2) and wraps in [0, R^2]
        rate = rng.uniform(*spec.dot_speed) * H * motion.zoom  # d(r^2)/dt in px^2 per frame
        r2 = (rng.uniform(0, R2, count)[None] + rate * t) % R2  # (T, K)
        ang, rad = np.broadcast_to(ang0[None], r2.shape), np.sqrt(r2)
    ys = (centre[0] + rad * np.sin(ang)).astype(np.float32)
    xs = (centre[1] + rad * np.cos(ang)).astype(np.float32)
    return ys, xs


def splat(
    ys: np.ndarray, xs: np.ndarray, radius: np.ndarray, H: int, wrap: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage ``a`` ``(T, H, W, 1)`` and top dot index ``(T, H, W)`` of round dots on a torus.

    A dot of radius ``r`` covers pixels at distance ``d < 1.5 r`` with ``alpha = clip(1.5 -
    d / r, 0, 1)`` (1 inside, a soft 1-px edge); where dots overlap the one with the largest
    alpha is on top (the lowest index on ties). Only a square stencil around each dot is
    evaluated, ``(T, K, S, S)`` values instead of ``(T, K, H, W)``: ~40x less work at 64 px.
    With ``wrap=False`` the plane is not a torus: dots outside the frame stay invisible.
    """
    T, K = ys.shape
    R = int(np.ceil(1.5 * float(radius.max()))) + 1
    off = np.arange(-R, R + 1)  # (S,)
    py = np.floor(ys).astype(np.int64)[..., None] + off  # (T, K, S) rows
    px = np.floor(xs).astype(np.int64)[..., None] + off  # (T, K, S) columns
    if wrap:
        py, px = py % H, px % H
        dy = (py.astype(np.float32) - ys[..., None] + H / 2) % H - H / 2  # (T, K, S)
        dx = (px.astype(np.float32) - xs[..., None] + H / 2) % H - H / 2  # (T, K, S)
    else:  # out-of-frame stencil pixels get alpha 0 and are dropped below
        dy, dx = py.astype(np.float32) - ys[..., None], px.astype(np.float32) - xs[..., None]
    dist = np.sqrt(dy[..., :, None] ** 2 + dx[..., None, :] ** 2)  # (T, K, S, S)
    inside = ((py >= 0) & (py < H))[..., :, None] & ((px >= 0) & (px < H))[..., None, :]
    alpha = np.clip(1.5 - dist / radius[None, :, None, None], 0, 1)
    alpha = np.where(inside, alpha, 0).ravel()
    t = np.arange(T)[:, None, None, None]
    flat = ((t * H + py[..., :, None]) * H + px[..., None, :]).ravel()  # pixel of each value
    k = np.broadcast_to(np.arange(K)[None, :, None, None], dist.shape).ravel()
    keep = alpha > 0
    flat, alpha, k = flat[keep], alpha[keep], k[keep]
    order = np.lexsort((k, -alpha, flat))  # per pixel: largest alpha first, then lowest k
    flat, alpha, k = flat[order], alpha[order], k[order]
    first = np.ones(flat.shape, dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    a = np.zeros(T * H * H, dtype=np.float32)
    top = np.zeros(T * H * H, dtype=np.int64)
    a[flat[first]], top[flat[first]] = alpha[first], k[first]
    return a.reshape(T, H, H, 1), top.reshape(T, H, H)


def render_dots(cls: int, scene_rng: np.random.Generator, rng: np.random.Generator,
                spec: SynthSpec) -> np.ndarray:
    """One video of class ``cls``: uint8 ``(T, H, W, 3)``.

    ``scene_rng`` draws the background (shared by a group's clips, like a UCF101 scene);
    ``rng`` draws the dots, the motion speed and the camera noise of this clip.
    """
    H = spec.size
    scene = draw_scene(scene_rng, spec)
    texture = _background(scene, H, scene_rng.uniform(-0.25, 0.25, 2))  # (H, W, 3)
    bg = (1 - spec.background_mix) * GREY + spec.background_mix * texture  # weak static shortcut
    motion = MOTIONS[cls]
    count = dot_count(motion, int(rng.integers(spec.dots[0], spec.dots[1] + 1)))
    ys, xs = dot_tracks(motion, rng, spec, count)  # (T, K) each
    size = rng.uniform(*spec.dot_radius, count).astype(np.float32)
    colour = rng.uniform(0, 255, (count, 3)).astype(np.float32)
    translation = motion.spin == 0 and motion.zoom == 0
    a, top = splat(ys, xs, size, H, wrap=translation)  # (T, H, W, 1), (T, H, W)
    frames = bg[None] * (1 - a) + colour[top] * a  # (T, H, W, 3)
    frames += rng.normal(0, spec.noise, frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).astype(np.uint8)
