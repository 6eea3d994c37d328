"""TEG (Qian et al., BMVC 2022): clip geometry, alignment, both losses against slow references
written from the paper's definitions, and training on a fixed batch."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ssvrl.augment import VideoAugment
from ssvrl.backbones import build_backbone
from ssvrl.data.sampling import TemporalView
from ssvrl.data.teg_sampling import (
    SharedClipSampler,
    SubClip,
    align_steps,
    all_offsets,
    cut_short,
    exact_offsets,
)
from ssvrl.objectives.teg import TEG, TEGConfig, fine_grained_nce

SMALL3D_16 = np.arange(8) * 2.0  # small3d's step centres for 16 frames: 0, 2, .., 14
SMALL3D_8 = np.arange(4) * 2.0
SMALL3D_4 = np.arange(2) * 2.0


# --- clip geometry and alignment ----------------------------------------------------------


def test_short_clip_is_inside_the_long_clip_and_aligned_by_hand() -> None:
    long_idx = 10 + 2 * np.arange(16)  # 16 frames at stride 2 from frame 10: 10, 12, .., 40
    sub = SubClip(16, 8, step=1)
    short_idx = sub.short_indices(long_idx, offset=4)
    assert short_idx.tolist() == [18, 20, 22, 24, 26, 28, 30, 32]
    assert set(short_idx) <= set(long_idx)
    # Short steps (small3d: stride 2) centre on short positions 0, 2, 4, 6 = frames 18, 22, 26,
    # 30; the long steps centred there are 2 (frame 14 + 4 = 18), 3, 4, 5.
    match, gap = align_steps(long_idx, short_idx, SMALL3D_16, SMALL3D_8)
    assert match.tolist() == [2, 3, 4, 5]
    assert np.all(gap == 0)
    # An odd offset falls between long steps: frames 16, 20, 24, 28 are 2 frames from both
    # neighbours (nearest: the earlier one).
    match, gap = align_steps(long_idx, sub.short_indices(long_idx, 3), SMALL3D_16, SMALL3D_8)
    assert match.tolist() == [1, 2, 3, 4] and np.all(gap == 2)


def test_strided_short_clip_alignment_by_hand() -> None:
    long_idx = 10 + 2 * np.arange(16)
    sub = SubClip(16, 4, step=2)  # every other long frame
    short_idx = sub.short_indices(long_idx, offset=2)  # long positions 2, 4, 6, 8
    assert short_idx.tolist() == [14, 18, 22, 26]
    # Short steps centre on short positions 0 and 2 = frames 14 and 22 = long positions 2, 6:
    # long steps 1 and 3.
    match, gap = align_steps(long_idx, short_idx, SMALL3D_16, SMALL3D_4)
    assert match.tolist() == [1, 3] and np.all(gap == 0)
    offsets, table = exact_offsets(sub, SMALL3D_16, SMALL3D_4)
    assert offsets.tolist() == [0, 2, 4, 6, 8]
    assert table.tolist() == [[0, 2], [1, 3], [2, 4], [3, 5], [4, 6]]


@pytest.mark.parametrize(
    ("name", "offsets", "table"),
    [
        ("small3d", [0, 2, 4, 6, 8], [[o // 2 + j for j in range(4)] for o in (0, 2, 4, 6, 8)]),
        ("r3d_18", [0, 8], [[0], [1]]),  # T' 2 and 1, centres 0, 8 and 0
        ("mc3_18", list(range(9)), [[o + j for j in range(8)] for o in range(9)]),
        ("s3d", [0, 8], [[0], [1]]),  # centres 2, 10 and 2
    ],
)
def test_exact_offsets_per_backbone(name: str, offsets: list, table: list) -> None:
    model = build_backbone(name)
    sub = SubClip(16, 8)
    got_offsets, got_table = exact_offsets(
        sub, model.temporal_centres(16), model.temporal_centres(8)
    )
    assert got_offsets.tolist() == offsets
    assert got_table.tolist() == table


def test_all_offsets_covers_every_position() -> None:
    offsets, table = all_offsets(SubClip(16, 8), SMALL3D_16, SMALL3D_8)
    assert offsets.tolist() == list(range(9))
    assert table[4].tolist() == [2, 3, 4, 5]


def test_subclip_must_fit() -> None:
    with pytest.raises(ValueError, match="must fit"):
        SubClip(8, 5, step=2)
    with pytest.raises(ValueError, match="must fit"):
        TEGConfig(long_frames=8, short_frames=9)
    with pytest.raises(ValueError, match="offset"):
        SubClip(16, 8).positions(9)


def test_shared_sampler_gives_the_long_clip_to_both_views() -> None:
    views = (TemporalView("long", 16, 2), TemporalView("short", 16, 2))
    sampler = SharedClipSampler(views)
    rng = np.random.default_rng(0)
    for num_frames in (100, 40, 10):  # 10 < span 31: looped
        out = sampler(num_frames, rng)
        assert set(out) == {"long", "short"}
        assert np.array_equal(out["long"], out["short"])
        assert out["long"].dtype == np.int64 and out["long"].shape == (16,)
        assert out["long"].min() >= 0 and out["long"].max() < num_frames
    with pytest.raises(ValueError, match="share"):
        SharedClipSampler((TemporalView("long", 16, 2), TemporalView("short", 8, 2)))


def test_cut_short_takes_each_rows_frames_from_the_sampled_indices() -> None:
    """End to end: frame pixels carry their source index; the cut clip holds exactly the short
    clip's indices, a subset of the long clip's."""
    sub = SubClip(16, 4, step=2)
    views = (TemporalView("long", 16, 3), TemporalView("short", 16, 3))
    rng = np.random.default_rng(1)
    rows = [SharedClipSampler(views)(200, rng) for _ in range(3)]
    source = torch.stack(
        [torch.from_numpy(r["short"]).float().view(1, 16, 1, 1).expand(2, 16, 3, 3) for r in rows]
    )  # (3, C=2, 16, 3, 3), value = source frame index
    offsets = torch.tensor([0, 5, 9])
    short = cut_short(source, offsets, sub)  # (3, 2, 4, 3, 3)
    assert short.shape == (3, 2, 4, 3, 3)
    for b, r in enumerate(rows):
        want = sub.short_indices(r["long"], int(offsets[b]))
        assert short[b, 0, :, 0, 0].long().tolist() == want.tolist()
        assert set(want) <= set(r["long"])


# --- the losses against slow references ---------------------------------------------------


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def fine_reference(
    short: torch.Tensor,
    long: torch.Tensor,
    match: torch.Tensor,
    tau: float,
    ids: list[int] | None = None,
    cross_video: bool = True,
) -> float:
    """Sec. 3, fine-grained term, anchor by anchor: short step (b, j) against long step
    (b, match[b, j]) as positive, every other long step of the batch as negatives (other videos'
    only with ``cross_video``; other samples of the same video never)."""
    B, Ts, _ = short.shape
    Tl = long.shape[1]
    total = 0.0
    for b in range(B):
        for j in range(Ts):
            pos = math.exp(_cos(short[b, j], long[b, int(match[b, j])]) / tau)
            denom = 0.0
            for c in range(B):
                if c != b and (not cross_video or (ids is not None and ids[c] == ids[b])):
                    continue
                for i in range(Tl):
                    denom += math.exp(_cos(short[b, j], long[c, i]) / tau)
            total += -math.log(pos / denom)
    return total / (B * Ts)


def persistent_reference(g_long: torch.Tensor, g_short: torch.Tensor, tau: float) -> float:
    """Sec. 3, persistent term (CVRL Eq. 1): each of the 2B clips' global embeddings against
    the other clip of its video, over the 2B - 1 other clips."""
    z = torch.cat([g_long, g_short])
    n = z.shape[0]
    B = n // 2
    total = 0.0
    for a in range(n):
        p = (a + B) % n
        denom = sum(math.exp(_cos(z[a], z[k]) / tau) for k in range(n) if k != a)
        total += -math.log(math.exp(_cos(z[a], z[p]) / tau) / denom)
    return total / n


def _random_dense(B: int = 3, Ts: int = 2, Tl: int = 4, E: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    short = torch.randn(B, Ts, E, generator=g)
    long = torch.randn(B, Tl, E, generator=g)
    match = torch.randint(0, Tl, (B, Ts), generator=g)
    return short, long, match


@pytest.mark.parametrize("cross_video", [True, False])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_fine_grained_loss_matches_reference(tau: float, cross_video: bool) -> None:
    short, long, match = _random_dense()
    got = fine_grained_nce(short, long, match, tau, cross_video=cross_video)
    want = fine_reference(short, long, match, tau, cross_video=cross_video)
    assert abs(float(got) - want) < 1e-4


def test_fine_grained_loss_masks_other_samples_of_the_same_video() -> None:
    short, long, match = _random_dense(B=4)
    ids = [7, 3, 7, 1]
    got = fine_grained_nce(short, long, match, 0.2, video_ids=torch.tensor(ids))
    assert abs(float(got) - fine_reference(short, long, match, 0.2, ids=ids)) < 1e-4
    distinct = fine_grained_nce(short, long, match, 0.2, video_ids=torch.tensor([0, 1, 2, 3]))
    assert abs(float(distinct) - float(fine_grained_nce(short, long, match, 0.2))) < 1e-6
    assert abs(float(got) - float(distinct)) > 1e-4


def _objective(**kw: object) -> TEG:
    base = TEGConfig(proj_hidden=32, proj_dim=16)
    cfg = replace(base, augment=replace(base.augment, crop_size=32), **kw)
    return TEG(cfg, embed_dim=8 * 8)


def test_objective_losses_match_references() -> None:
    torch.manual_seed(0)
    obj = _objective(temperature=0.2).eval()  # eval: BN in the heads uses running stats
    B, D = 3, obj.embed_dim
    h_long, h_short = torch.randn(B, D, 8), torch.randn(B, D, 4)
    match = torch.tensor([[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]])
    fine, persistent, pos, g = obj.losses(h_long, h_short, match)
    with torch.no_grad():
        z_long = obj.dense_head(h_long.transpose(1, 2).reshape(-1, D)).view(B, 8, -1)
        z_short = obj.dense_head(h_short.transpose(1, 2).reshape(-1, D)).view(B, 4, -1)
        g_long = obj.global_head(h_long.mean(dim=2))
        g_short = obj.global_head(h_short.mean(dim=2))
    assert abs(float(fine.detach()) - fine_reference(z_short, z_long, match, 0.2)) < 1e-4
    assert abs(float(persistent.detach()) - persistent_reference(g_long, g_short, 0.2)) < 1e-4
    want_pos = [_cos(g_long[b], g_short[b]) / 0.2 for b in range(B)]
    assert torch.allclose(pos, torch.tensor(want_pos), atol=1e-4)
    assert pos.requires_grad


# --- the objective ------------------------------------------------------------------------


def _views(obj: TEG, B: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    views = {}
    for k, v in enumerate(obj.views()):
        raw = torch.randint(0, 256, (B, 3, v.frames, 40, 40), dtype=torch.uint8, generator=g)
        views[v.name] = VideoAugment(v.augment)(raw, torch.arange(B) + 100 * k)
    return views


def test_forward_outputs_and_weights() -> None:
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=8)
    obj = _objective(fine_weight=0.25, persistent_weight=2.0)
    views = _views(obj, B=4)
    assert {v.name: (v.frames, v.stride) for v in obj.views()} == {
        "long": (16, 2),
        "short": (16, 2),
    }
    out = obj(encoder, views, video_ids=torch.tensor([0, 1, 1, 2]))
    logs = out.logs
    want = 0.25 * logs["loss_fine"] + 2.0 * logs["loss_persistent"]
    assert torch.allclose(out.loss.detach(), want)
    assert all(not v.requires_grad for v in logs.values())
    assert out.positive_logits is not None and out.positive_logits.shape == (4,)
    out.loss.backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_loss_decreases_on_fixed_batch() -> None:
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=8)
    obj = _objective()
    views = _views(obj, B=6)
    opt = torch.optim.Adam(list(encoder.parameters()) + list(obj.parameters()), lr=1e-3)
    fine, persistent = [], []
    for _ in range(20):
        out = obj(encoder, views)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        fine.append(float(out.logs["loss_fine"]))
        persistent.append(float(out.logs["loss_persistent"]))
    assert np.mean(fine[-3:]) < 0.7 * fine[0]
    assert np.mean(persistent[-3:]) < 0.7 * persistent[0]


def test_needs_a_temporal_encoder() -> None:
    obj = _objective()
    with pytest.raises(TypeError, match="forward_temporal"):
        obj(torch.nn.Identity(), _views(obj, B=2))


def test_fine_grained_gradient_flows_to_both_clips() -> None:
    short, long, match = _random_dense()
    short.requires_grad_(True)
    long.requires_grad_(True)
    fine_grained_nce(short, long, match, 0.1).backward()
    assert short.grad is not None and short.grad.abs().sum() > 0
    assert long.grad is not None and long.grad.abs().sum() > 0
