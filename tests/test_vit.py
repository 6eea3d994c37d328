"""The video ViT: token grids and positional embeddings for any view size and length, both
attention kinds, the registry sizes, and 2D checkpoint inflation checked against a timm ViT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ssvrl.backbones import BACKBONES, build_backbone
from ssvrl.backbones.vit import VideoViT


def _tiny(**kw: object) -> VideoViT:
    torch.manual_seed(0)
    args: dict = dict(embed_dim=48, depth=2, heads=3, patch_size=8, img_size=32, num_frames=4)
    return VideoViT(**{**args, **kw})


def test_registered_sizes() -> None:
    assert {"vit_micro", "vit_tiny", "vit_small", "vit_base"} <= set(BACKBONES.names())
    assert build_backbone("vit_micro").num_features == 96
    assert build_backbone("vit_tiny").num_features == 192
    for name, dim in (("vit_small", 384), ("vit_base", 768)):
        assert BACKBONES.get(name)(depth=1).num_features == dim  # 1 block: fast to build


@pytest.mark.parametrize("attention", ["divided", "joint"])
def test_odd_sizes_and_frame_counts(attention: str) -> None:
    model = _tiny(tubelet=2, attention=attention)
    x = torch.randn(2, 3, 7, 40, 56)  # 7 frames (not a whole number of tubelets), 5 x 7 patches
    assert model(x).shape == (2, 48)
    assert model.forward_features(x).shape == (2, 48, 4, 5, 7)
    assert model.forward_temporal(x).shape == (2, 48, 4) and model.temporal_size(7) == 4
    assert model.temporal_centres(7).tolist() == [0.5, 2.5, 4.5, 6.5]
    # The missing frame of the last tubelet is the last frame repeated.
    padded = torch.cat([x, x[:, :, -1:]], dim=2)
    torch.testing.assert_close(model(x), model(padded))
    for shape in [(1, 32, 32), (2, 16, 24), (16, 56, 40), (9, 96, 96)]:  # views of one model
        out = model(torch.randn(1, 3, *shape))
        assert out.shape == (1, 48) and torch.isfinite(out).all()


def test_positional_embedding_grid() -> None:
    model = _tiny(tubelet=1)
    D = 48
    with torch.no_grad():  # spatial position (i, j) -> value 10 i + j; time step t -> 100 t
        grid = torch.arange(4)[:, None] * 10 + torch.arange(4)[None, :]  # (4, 4)
        model.pos_embed[0, 1:] = grid.reshape(16, 1).float().expand(16, D)
        model.pos_embed[0, 0] = -1.0
        model.time_embed[0] = (torch.arange(4) * 100).float()[:, None].expand(4, D)
    cls, pos = model.position(4, 4, 4)  # the native grid: no interpolation
    assert torch.equal(cls, torch.full((1, 1, D), -1.0))
    want = (torch.arange(4)[:, None, None] * 100 + grid[None]).reshape(1, 64, 1).float()
    torch.testing.assert_close(pos, want.expand(1, 64, D))
    # 7 steps on a 5 x 7 grid: linear in time and (bicubic) in space; token (t, i, j) order.
    _, pos = model.position(7, 5, 7)
    pos = pos[0, :, 0].reshape(7, 5, 7)
    assert pos.shape == (7, 5, 7)
    steps = pos[:, 2, 3]  # one patch through time: increasing, spans the learnt range
    assert (steps.diff() > 0).all() and steps[0] >= 0 and steps[-1] <= 300 + 33
    assert (pos[3].diff(dim=0) > 0).all() and (pos[3].diff(dim=1) > 0).all()  # i, j ramps
    # Gradients reach both tables through the interpolation (a fresh model: the constant-over-
    # channel tables above are invisible after LayerNorm).
    model = _tiny(tubelet=1)
    model(torch.randn(1, 3, 7, 40, 56)).square().sum().backward()  # (a plain sum: ~constant)
    assert model.pos_embed.grad is not None and model.time_embed.grad is not None
    assert model.time_embed.grad.abs().sum() > 0


def _timm_2d(tmp_path: Path, suffix: str = ".pt") -> tuple[VisionTransformer, Path]:
    torch.manual_seed(1)
    net = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=7
    ).eval()
    path = tmp_path / f"vit2d{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    else:
        torch.save(net.state_dict(), path)
    return net, path


@pytest.mark.parametrize("attention", ["divided", "joint"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_2d_checkpoint_gives_the_2d_model_on_one_frame(
    tmp_path: Path, attention: str, suffix: str
) -> None:
    net, path = _timm_2d(tmp_path, suffix)
    kw = dict(embed_dim=48, depth=2, heads=3, patch_size=8, img_size=32, num_frames=4)
    video = build_backbone("vit_tiny", str(path), attention=attention, tubelet=1, **kw).eval()
    img = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = net.forward_features(img)[:, 0]  # timm's CLS after the final norm
        out = video(img[:, :, None])  # (B, C, 1, H, W)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(video.time_embed, torch.zeros_like(video.time_embed))


@pytest.mark.parametrize("inflate", ["average", "centre"])
def test_tubelet_inflation(tmp_path: Path, inflate: str) -> None:
    net, path = _timm_2d(tmp_path)
    kw = dict(embed_dim=48, depth=2, heads=3, patch_size=8, img_size=32, num_frames=4)
    video = build_backbone("vit_tiny", str(path), tubelet=2, inflate=inflate, **kw).eval()
    img = torch.randn(2, 3, 32, 32)
    # average: a static 2-frame clip gives the 2D tokens; centre: only frame 1 counts.
    other = img if inflate == "average" else torch.randn(2, 3, 32, 32)
    clip = torch.stack([other, img], dim=2)  # (B, C, 2, H, W)
    with torch.no_grad():
        torch.testing.assert_close(video(clip), net.forward_features(img)[:, 0], atol=1e-5,
                                   rtol=1e-5)  # fmt: skip


def test_2d_checkpoint_of_another_grid_and_mismatch(tmp_path: Path) -> None:
    _, path = _timm_2d(tmp_path)
    video = build_backbone("vit_tiny", str(path), embed_dim=48, depth=2, heads=3, patch_size=8,
                           img_size=48)  # fmt: skip
    assert video.pos_embed.shape == (1, 1 + 36, 48)  # 4 x 4 grid resized to 6 x 6
    with pytest.raises(ValueError, match="width"):
        build_backbone("vit_tiny", str(path), embed_dim=48, depth=2, heads=3, patch_size=16)
