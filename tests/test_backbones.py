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
