"""VICReg for video, as an out-of-tree ssvrl objective.

Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022. Two views, an expander ``h`` (Sec. 4.2: three linear
layers, BN + ReLU between them), embeddings ``Z, Z'`` (n x d) and, with no negatives and no
momentum teacher, three terms (Sec. 3.2):

- variance (Eq. 1): ``v(Z) = 1/d sum_j max(0, gamma - S(z^j, eps))``, ``S(x, eps) = sqrt(Var(x)
  + eps)`` over the batch, per dimension: keeps every dimension's std at >= gamma;
- covariance (Eq. 3-4): ``c(Z) = 1/d sum_{i != j} C(Z)_ij^2``, ``C(Z)`` the (n-1)-normalised
  covariance matrix: decorrelates the dimensions;
- invariance (Eq. 5): the squared distance between the two views' embeddings, taken as the
  element-wise mean as in the paper's Algorithm 1 (``F.mse_loss``), i.e. Eq. 5 divided by d;

``loss = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]`` (Eq. 6) with lambda = mu = 25,
nu = 1, gamma = 1, eps = 1e-4 (Sec. 4.2). For video the views are two clips of one video at
independent random times, each with its own spatial augmentation (the rho = 2 setting of
Feichtenhofer et al., "A Large-Scale Study on Unsupervised Spatiotemporal Representation
Learning", CVPR 2021, Sec. 3). With several processes the variance and covariance see the
global batch (embeddings gathered with gradients, as the official code's FullGatherLayer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.augment import AugmentConfig
from ssvrl.heads.mlp import mlp_head
from ssvrl.objectives import OBJECTIVES, Objective, ObjectiveConfig, ObjectiveOutput, ViewSpec
from ssvrl.utils.dist import gather_with_grad


@dataclass(frozen=True)
class VICRegConfig(ObjectiveConfig):
    name: str = "vicreg"
    frames: int = 16  # T per clip
    stride: int = 2  # temporal stride inside a clip
    proj_hidden: int = 2048  # expander width (paper, ImageNet ResNet-50: 8192)
    proj_dim: int = 2048  # d, the embedding the loss sees (paper: 8192)
    proj_layers: int = 3  # Sec. 4.2: 3 layers
    sim_weight: float = 25.0  # lambda
    var_weight: float = 25.0  # mu
    cov_weight: float = 1.0  # nu
    gamma: float = 1.0  # target std per dimension
    eps: float = 1e-4  # inside the square root of the variance term
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # both clips' recipe


def variance_term(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """Eq. 1: hinge on each dimension's std over the batch. ``z`` (n, d) -> scalar."""
    std = torch.sqrt(z.var(dim=0) + eps)  # (d,) unbiased variance, as the paper's code
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Eq. 3-4: sum of squared off-diagonal covariances over d. ``z`` (n, d) -> scalar."""
    n, d = z.shape
    zc = z - z.mean(dim=0)  # (n, d)
    cov = zc.T @ zc / (n - 1)  # (d, d)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


def vicreg_loss(
    z1: torch.Tensor, z2: torch.Tensor, cfg: VICRegConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 6 on ``(B, d)`` embeddings of the two views; returns the loss and its terms."""
    z1, z2 = z1.float(), z2.float()  # statistics in float32 under autocast
    sim = F.mse_loss(z1, z2)  # local pairs; Eq. 5 / d
    g1, g2 = gather_with_grad(z1), gather_with_grad(z2)  # (P*B, d): global batch statistics
    var = variance_term(g1, cfg.gamma, cfg.eps) + variance_term(g2, cfg.gamma, cfg.eps)
    cov = covariance_term(g1) + covariance_term(g2)
    loss = cfg.sim_weight * sim + cfg.var_weight * var + cfg.cov_weight * cov
    return loss, {"invariance": sim.detach(), "variance": var.detach(), "covariance": cov.detach()}


@OBJECTIVES.register("vicreg")
class VICReg(Objective):
    """Two clips of a video, an expander, and the variance-invariance-covariance loss."""

    Config = VICRegConfig
    cfg: VICRegConfig

    def __init__(self, cfg: VICRegConfig, embed_dim: int) -> None:
        super().__init__(cfg, embed_dim)
        self.expander = mlp_head(embed_dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers)

    def views(self) -> tuple[ViewSpec, ...]:
        c = self.cfg
        return (ViewSpec("clip1", c.frames, c.stride, c.augment),
                ViewSpec("clip2", c.frames, c.stride, c.augment))  # fmt: skip

    def forward(self, encoder: nn.Module, views: dict[str, torch.Tensor]) -> ObjectiveOutput:
        # Separate passes: each view's batch norm statistics are its own, as in the paper.
        z1 = self.expander(encoder(views["clip1"]))  # (B, d)
        z2 = self.expander(encoder(views["clip2"]))  # (B, d)
        loss, logs = vicreg_loss(z1, z2, self.cfg)
        return ObjectiveOutput(loss, logs)
