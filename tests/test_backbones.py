"""Every registered backbone honours the contract: (B, C, T, H, W) -> (B, D) and a 5-D map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssvrl.backbones import BACKBONES, build_backbone, load_weights
from ssvrl.registry import RegistryError

INPUT = {"s3d": (2, 3, 16, 64, 64)}  # S3D's pooling needs 16 frames; the rest take the default


@pytest.mark.parametrize("name", BACKBONES.names())
def test_contract(name: str) -> None:
    model = build_backbone(name).eval()
    x = torch.randn(*INPUT.get(name, (2, 3, 8, 56, 56)))
    fmap = model.forward_features(x)
    assert fmap.ndim == 5 and fmap.shape[:2] == (2, model.num_features)
    out = model(x)
    assert out.shape == (2, model.num_features)
    if not name.startswith("vit"):  # CNNs pool the map; ViTs return CLS (tests/test_vit.py)
        assert torch.allclose(out, fmap.mean(dim=(2, 3, 4)), atol=1e-6)


def test_unknown_name_suggests() -> None:
    with pytest.raises(RegistryError, match="Did you mean 'r3d_18'"):
        build_backbone("r3d18")


def test_weights_round_trip_and_mismatch(tmp_path: Path) -> None:
    a, b = build_backbone("small3d", width=8), build_backbone("small3d", width=8)
    path = tmp_path / "w.pt"
    # An ssvrl/Lightning checkpoint layout: state_dict with "backbone." keys.
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in a.state_dict().items()}}, path)
    load_weights(b, path)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    torch.save({"stages.0.0.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_weights(b, tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_weights(b, tmp_path / "absent.pt")


def test_malicious_pickle_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_weights(build_backbone("small3d", width=8), tmp_path / "evil.pt")


# --- temporal feature maps (TEG's dense temporal embeddings) -------------------------------

SIZE = {"s3d": 64}  # S3D's spatial pooling wants 64 px; the rest run at 56
STRIDE = {"small3d": 2, "r3d_18": 8, "r2plus1d_18": 8, "mc3_18": 1, "s3d": 8}
T_OUT: dict[str, tuple[int, int]] = {  # (T=8, T=16) -> T', as documented on each backbone
    "small3d": (4, 8),
    "r3d_18": (1, 2),
    "r2plus1d_18": (1, 2),
    "mc3_18": (8, 16),
    "s3d": (1, 2),
}


@pytest.mark.parametrize("frames", [8, 16])
@pytest.mark.parametrize("name", sorted(T_OUT))  # the CNNs; ViTs in tests/test_vit.py
def test_forward_temporal_shape_and_pooling(name: str, frames: int) -> None:
    torch.manual_seed(0)
    model = build_backbone(name).eval()
    size = SIZE.get(name, 56)
    x = torch.randn(2, 3, frames, size, size)
    with torch.no_grad():
        seq = model.forward_temporal(x)  # (B, D, T')
        pooled = model(x)  # (B, D)
    t_out = T_OUT[name][frames == 16]
    assert seq.shape == (2, model.num_features, t_out)
    assert model.temporal_size(frames) == t_out
    assert model.temporal_centres(frames).shape == (t_out,)
    assert model.temporal_stride == STRIDE[name]
    # Mean over equal-size groups: forward's features are forward_temporal pooled over time.
    assert torch.allclose(seq.mean(dim=2), pooled, atol=1e-5)


@pytest.mark.parametrize("name", ["small3d", "r3d_18", "mc3_18"])
def test_temporal_size_matches_the_network(name: str) -> None:
    model = build_backbone(name, **({"width": 4} if name == "small3d" else {})).eval()
    for frames in (3, 5, 7, 9, 12, 17, 24):
        with torch.no_grad():
            seq = model.forward_temporal(torch.randn(1, 3, frames, 32, 32))
        assert seq.shape[2] == model.temporal_size(frames), frames


def _constant_net(name: str) -> torch.nn.Module:
    """The backbone with every conv weight a positive constant and max-pools made symmetric
    (strided ones averaged, stride-1 ones dropped: both keep the time geometry), so that the
    gradient of an output step w.r.t. the input frames is symmetric about its centre."""
    model = build_backbone(name, **({"width": 4} if name == "small3d" else {})).eval()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.MaxPool3d):
                stride = child.stride if isinstance(child.stride, tuple) else (child.stride,) * 3
                new: torch.nn.Module = (
                    torch.nn.Identity()
                    if max(stride) == 1
                    else torch.nn.AvgPool3d(child.kernel_size, child.stride, child.padding)
                )
                setattr(module, child_name, new)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                module.weight.fill_(1.0 / module.weight[0].numel())
    return model


@pytest.mark.parametrize("name", BACKBONES.names())
def test_temporal_centres_are_receptive_field_centres(name: str) -> None:
    """The centroid of d(step i)/d(input frames) is ``temporal_centres[i]`` for an inner step
    whose receptive field the clip contains."""
    model = _constant_net(name)
    frames = 96 if model.temporal_stride == 8 else 32
    size = 64 if name == "s3d" else 32
    x = torch.ones(1, 3, frames, size, size, requires_grad=True)
    seq = model.forward_temporal(x)  # (1, D, T')
    i = seq.shape[2] // 2
    seq[0, :, i].sum().backward()
    assert x.grad is not None
    weight = x.grad.abs().sum(dim=(0, 1, 3, 4))  # (T,)
    centroid = float((weight * torch.arange(frames)).sum() / weight.sum())
    assert abs(centroid - model.temporal_centres(frames)[i]) < 0.01
