"""Video encoders: ``build_backbone(name)``; importing this package registers all of them."""

from ssvrl.backbones import small3d, torchvision_video, vit  # noqa: F401  (registration)
from ssvrl.backbones.base import BACKBONES, VideoBackbone, build_backbone, load_weights

__all__ = ["BACKBONES", "VideoBackbone", "build_backbone", "load_weights"]
