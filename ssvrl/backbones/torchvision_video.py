"""torchvision's video ResNets (Tran et al., CVPR 2018) and S3D (Xie et al., ECCV 2018).

Built without weights (nothing is downloaded); a user's local weights load through
``build_backbone(..., weights=path)``. The classifier is dropped: these return features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from ssvrl.backbones.base import BACKBONES, TemporalLayer, VideoBackbone


class _VideoResNet(VideoBackbone):
    """R3D-18 / MC3-18 / R(2+1)D-18 trunk: stem + layer1..4, map ``(B, 512, T', H/16, W/16)``.

    Time (``temporal_layers``): R3D-18 and R(2+1)D-18 halve it in layer2, layer3 and layer4
    (kernel 3, stride 2, padding 1; the 1x1x1 shortcut agrees), so ``T' = ceil(ceil(ceil(T/2)
    /2)/2)`` (16 -> 2, 8 -> 1) and step ``i`` is centred on input frame ``8 i``; MC3-18's
    layers 2-4 are 2D (no temporal stride), so ``T' = T`` and step ``i`` is centred on ``i``.
    """

    factory: Callable[..., nn.Module]

    def __init__(self) -> None:
        super().__init__()
        net: Any = type(self).factory(weights=None)
        self.stem = net.stem
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.num_features = net.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


_HALVE: TemporalLayer = (3, 2, 1)  # a stride-2 kernel-3 convolution along time


def _resnet(
    name: str, factory_name: str, temporal_layers: tuple[TemporalLayer, ...]
) -> type[_VideoResNet]:
    def factory(**kwargs: object) -> nn.Module:
        from torchvision.models import video  # imported lazily: torchvision is slow to import

        return getattr(video, factory_name)(**kwargs)

    attrs = {"factory": staticmethod(factory), "temporal_layers": temporal_layers}
    cls = type(factory_name.upper(), (_VideoResNet,), attrs)
    cls.__doc__ = f"torchvision ``{factory_name}`` trunk as a ssvrl backbone."
    return cast(type[_VideoResNet], BACKBONES.register(name)(cls))


R3D18 = _resnet("r3d_18", "r3d_18", (_HALVE,) * 3)
MC3_18 = _resnet("mc3_18", "mc3_18", ())
R2Plus1D18 = _resnet("r2plus1d_18", "r2plus1d_18", (_HALVE,) * 3)


@BACKBONES.register("s3d")
class S3D(VideoBackbone):
    """torchvision S3D features; map ``(B, 1024, T', H/32, W/32)``.

    Time: the stem's separable conv (kernel 7, stride 2, padding 3), the 3x3x3 max-pool (stride
    2, padding 1) and the final 2x2x2 max-pool (stride 2, no padding): ``T' = T/8`` for ``T`` a
    multiple of 8, step ``i`` centred on input frame ``8 i + 2`` (the unpadded 2-pool's centre).
    """

    temporal_layers = ((7, 2, 3), (3, 2, 1), (2, 2, 0))

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.video import s3d

        self.features = s3d(weights=None).features
        self.num_features = 1024

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
