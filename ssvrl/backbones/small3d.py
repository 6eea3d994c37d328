"""A small plain 3D CNN sized for CPU runs (the quickstart) and tests."""

from __future__ import annotations

import torch
from torch import nn

from ssvrl.backbones.base import BACKBONES, VideoBackbone


def _conv_bn_relu(
    cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> nn.Sequential:
    pad = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=pad, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


@BACKBONES.register("small3d")
class Small3DCNN(VideoBackbone):
    """Four conv-BN-ReLU stages; spatial stride 16 overall, temporal stride 2.

    At 8x56x56 input the map is ``(B, 8w, 4, 4, 4)`` (``w = width``); about 0.3 GFLOPs per
    clip at width 32, so a CVRL epoch over a few hundred videos takes seconds on 2 cores.
    Time: ``T' = ceil(T / 2)``, step ``i`` centred on input frame ``2 i`` (the third stage's
    stride-2 kernel-3 convolution).
    """

    temporal_layers = ((3, 2, 1),)

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stages = nn.Sequential(
            _conv_bn_relu(3, w, (3, 5, 5), (1, 2, 2)),
            _conv_bn_relu(w, 2 * w, (3, 3, 3), (1, 2, 2)),
            _conv_bn_relu(2 * w, 4 * w, (3, 3, 3), (2, 2, 2)),
            _conv_bn_relu(4 * w, 8 * w, (3, 3, 3), (1, 2, 2)),
        )
        self.num_features = 8 * w

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)  # (B, 8w, T/2, H/16, W/16)
