"""TEG: Exploring Temporal Granularity in Self-Supervised Video Representation Learning
(Qian et al., BMVC 2022, arXiv 2112.04480).

Sec. 3: from each video a long clip and a short clip lying inside it; the encoder's temporal
feature map (pooled over space only) gives dense temporal embeddings through a projection head
applied at every time step. Two InfoNCE objectives, weighted:

* fine-grained temporal learning: each time step of the short clip is pulled towards the long
  clip's embedding of the same moment and pushed from the long clip's other time steps and
  (``fine_cross_video``) every time step of the other videos' long clips;
* persistent temporal learning: the two clips' global (temporally pooled) embeddings are
  positives against the other videos' clips, as in CVRL (Qian et al., CVPR 2021, Eq. 1).

``fine_weight`` and ``persistent_weight`` set the temporal granularity of the features; the
paper's finding is that tasks differ in the granularity they need, and that some tasks thought
to need temporal awareness do well with temporally persistent features. The defaults here
(tau 0.1, a 3-layer MLP head per branch, equal weights) follow the CVRL recipe of
:mod:`ssvrl.objectives.cvrl`; set them in YAML to follow another recipe. The global embedding
is the global head on the time-pooled features (:meth:`VideoBackbone.forward`'s), the dense ones
the dense head on each time step.

How the clips are made (see :mod:`ssvrl.data.teg_sampling`): the long clip's frames are decoded
once and augmented twice, as views "long" and "short"; :meth:`TEG.forward` draws each sample's
offset and cuts the short clip (``short_frames`` frames, every ``short_step``-th frame of the
long clip) out of the "short" view, so the short clip's frames are a subset of the long clip's
and the alignment of time steps is known exactly. By default only offsets at which every short
step falls exactly on a long step are drawn (``exact_alignment``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.augment import AugmentConfig, AugmentOverride, apply_override
from ssvrl.backbones.base import VideoBackbone
from ssvrl.data.sampling import ClipSampler
from ssvrl.data.teg_sampling import (
    SharedClipSampler,
    SubClip,
    all_offsets,
    cut_short,
    exact_offsets,
)
from ssvrl.heads.mlp import mlp_head
from ssvrl.losses.info_nce import info_nce
from ssvrl.losses.precision import cosine_logits
from ssvrl.objectives.base import OBJECTIVES, Objective, ObjectiveConfig, ObjectiveOutput, ViewSpec
from ssvrl.utils.dist import gather_no_grad, gather_with_grad, rank

VIEWS = ("long", "short")


@dataclass(frozen=True)
class TEGConfig(ObjectiveConfig):
    name: str = "teg"
    long_frames: int = 16  # L, frames of the long clip
    long_stride: int = 2  # frames between two of the long clip's frames (or long_fps)
    long_fps: float | None = None  # sample the long clip at this rate when the video's is known
    short_frames: int = 8  # S, frames of the short clip
    short_step: int = 1  # the short clip takes every short_step-th frame of the long clip
    exact_alignment: bool = True  # only offsets where short steps sit exactly on long steps
    temperature: float = 0.1  # tau of both InfoNCE terms (CVRL's value)
    fine_weight: float = 1.0  # weight of the fine-grained temporal loss
    persistent_weight: float = 1.0  # weight of the persistent temporal loss
    fine_cross_video: bool = True  # other videos' time steps are fine-grained negatives too
    proj_hidden: int = 2048
    proj_dim: int = 128
    proj_layers: int = 3
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # both views' recipe
    view_augment: dict[str, AugmentOverride] = field(default_factory=dict)  # by view name

    def __post_init__(self) -> None:
        unknown = set(self.view_augment) - set(VIEWS)
        if unknown:
            raise ValueError(f"view_augment: unknown view(s) {sorted(unknown)}; TEG has {VIEWS}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.fine_weight < 0 or self.persistent_weight < 0:
            raise ValueError("fine_weight and persistent_weight must be >= 0")
        SubClip(self.long_frames, self.short_frames, self.short_step)  # validates the fit


def fine_grained_nce(
    short: torch.Tensor,
    long: torch.Tensor,
    match: torch.Tensor,
    temperature: float = 0.1,
    video_ids: torch.Tensor | None = None,
    cross_video: bool = True,
) -> torch.Tensor:
    """TEG's fine-grained temporal loss, gathered across processes.

    Args:
        short: ``(B, T_s, E)`` dense embeddings of the short clips (the anchors).
        long: ``(B, T_l, E)`` dense embeddings of the long clips (the candidates).
        match: ``(B, T_s)`` int, the long step at the same moment as each short step.
        temperature: tau.
        video_ids: optional ``(B,)`` video of each row, unique across processes: long-clip
            steps of OTHER rows of the same video are not negatives (masked).
        cross_video: False keeps only the anchor's own long clip as candidates.

    Returns:
        Scalar: the mean over the ``B * T_s`` local anchors of ``-log softmax`` of the positive
        among the candidates; on P processes the mean of the per-rank values equals the
        1-process loss on the concatenated batch.
    """
    B, Ts, E = short.shape
    if long.shape[0] != B or long.shape[2] != E or match.shape != (B, Ts):
        raise ValueError(
            f"shapes do not agree: short {tuple(short.shape)}, long {tuple(long.shape)}, "
            f"match {tuple(match.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    Tl = long.shape[1]
    anchors = F.normalize(short.float(), dim=-1).reshape(B * Ts, E)  # (B*Ts, E)
    cand = gather_with_grad(F.normalize(long.float(), dim=-1))  # (P*B, Tl, E)
    logits = cosine_logits(anchors, cand.reshape(-1, E), temperature)  # (B*Ts, P*B*Tl) fp32
    device = anchors.device
    own = (torch.arange(B, device=device) + rank() * B).repeat_interleave(Ts)  # (B*Ts,) row
    target = own * Tl + match.to(device).long().reshape(-1)  # (B*Ts,)
    cand_row = torch.arange(cand.shape[0], device=device).repeat_interleave(Tl)  # (P*B*Tl,)
    other = cand_row[None, :] != own[:, None]  # (B*Ts, P*B*Tl) candidates of other rows
    if not cross_video:
        logits = logits.masked_fill(other, -1e9)
    elif video_ids is not None:
        ids = video_ids.to(device).long().view(-1)  # (B,)
        if ids.shape[0] != B:
            raise ValueError(f"video_ids must have {B} entries, got {ids.shape[0]}")
        cand_ids = gather_no_grad(ids).repeat_interleave(Tl)  # (P*B*Tl,)
        same = ids.repeat_interleave(Ts)[:, None] == cand_ids[None, :]
        logits = logits.masked_fill(same & other, -1e9)
    return F.cross_entropy(logits, target)


@OBJECTIVES.register("teg")
class TEG(Objective):
    """Fine-grained (per time step) plus persistent (per clip) contrastive learning."""

    Config = TEGConfig
    supports_repeats = True  # same-video rows are masked in both terms
    provides_positive_logits = True  # the persistent term's, anchored on the long clips
    cfg: TEGConfig

    def __init__(self, cfg: TEGConfig, embed_dim: int) -> None:
        super().__init__(cfg, embed_dim)
        self.sub = SubClip(cfg.long_frames, cfg.short_frames, cfg.short_step)
        # One head per granularity: per time step (dense) and per clip (global).
        self.dense_head = mlp_head(embed_dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers)
        self.global_head = mlp_head(embed_dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers)
        self._tables: dict[tuple, tuple[np.ndarray, torch.Tensor]] = {}

    def views(self) -> tuple[ViewSpec, ...]:
        c = self.cfg
        return tuple(
            ViewSpec(
                name,
                c.long_frames,
                c.long_stride,
                apply_override(c.augment, c.view_augment.get(name)),
                fps=c.long_fps,
            )
            for name in VIEWS
        )

    def clip_sampler(self) -> ClipSampler:
        return SharedClipSampler(tuple(v.temporal for v in self.views()))

    def alignment(self, encoder: nn.Module) -> tuple[np.ndarray, torch.Tensor]:
        """``(offsets (K,), match (K, T'_S))`` for this encoder, computed once per geometry."""
        centres = getattr(encoder, "temporal_centres", None)
        if centres is None:
            raise TypeError("TEG needs an encoder with forward_temporal and temporal_centres")
        long_c = centres(self.sub.long_frames)  # (T'_L,)
        short_c = centres(self.sub.short_frames)  # (T'_S,)
        key = (tuple(long_c), tuple(short_c))
        if key not in self._tables:
            offsets, match = (
                exact_offsets(self.sub, long_c, short_c)
                if self.cfg.exact_alignment
                else (np.empty(0, dtype=np.int64), None)
            )
            if len(offsets) == 0:  # nothing exact (or not asked for): nearest steps
                offsets, match = all_offsets(self.sub, long_c, short_c)
            self._tables[key] = (offsets, torch.from_numpy(match))
        return self._tables[key]

    def losses(
        self,
        h_long: torch.Tensor,
        h_short: torch.Tensor,
        match: torch.Tensor,
        video_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """From temporal features ``h_long`` (B, D, T'_L) and ``h_short`` (B, D, T'_S) and the
        alignment ``match`` (B, T'_S): ``(fine, persistent, positive_logits (B,), g (2B, E))``."""
        B, D, Tl = h_long.shape
        Ts = h_short.shape[2]
        steps = torch.cat(
            [h_long.transpose(1, 2).reshape(B * Tl, D), h_short.transpose(1, 2).reshape(B * Ts, D)]
        )  # (B*(Tl+Ts), D)
        z = self.dense_head(steps)  # (B*(Tl+Ts), E)
        z_long, z_short = z[: B * Tl].view(B, Tl, -1), z[B * Tl :].view(B, Ts, -1)
        fine = fine_grained_nce(
            z_short, z_long, match, self.cfg.temperature, video_ids, self.cfg.fine_cross_video
        )
        g = self.global_head(torch.cat([h_long.mean(dim=2), h_short.mean(dim=2)]))  # (2B, E)
        persistent = info_nce(g[:B], g[B:], self.cfg.temperature, video_ids=video_ids)
        n = F.normalize(g.float(), dim=1)
        pos = (n[:B] * n[B:]).sum(dim=1) / self.cfg.temperature  # (B,) long rows' positives
        return fine, persistent, pos, g

    def forward(  # type: ignore[override]
        self,
        encoder: nn.Module,
        views: dict[str, torch.Tensor],
        video_ids: torch.Tensor | None = None,
    ) -> ObjectiveOutput:
        long, source = views["long"], views["short"]  # (B, C, L, H, W) each
        B = long.shape[0]
        offsets, table = self.alignment(encoder)
        pick = torch.randint(len(offsets), (B,))  # (B,) one offset per sample, CPU RNG
        short = cut_short(source, torch.from_numpy(offsets)[pick], self.sub)  # (B, C, S, H, W)
        temporal = getattr(encoder, "forward_temporal")  # noqa: B009  (nn.Module typing)
        h_long = temporal(long)  # (B, D, T'_L); the first encoder call: rows = long clips
        h_short = temporal(short)  # (B, D, T'_S)
        match = table[pick].to(long.device, non_blocking=True)  # (B, T'_S), no stream sync
        fine, persistent, pos, g = self.losses(h_long, h_short, match, video_ids)
        loss = self.cfg.fine_weight * fine + self.cfg.persistent_weight * persistent
        with torch.no_grad():
            std = F.normalize(g.float(), dim=1).std(dim=0).mean()
        logs = {
            "loss_fine": fine.detach(),
            "loss_persistent": persistent.detach(),
            "embedding_std": std,
        }
        # encoder(long) is h_long's time mean only for global-average-pool backbones (not a
        # ViT's CLS token); others leave the features to the engine's extra forward.
        pooled = type(encoder).forward is VideoBackbone.forward
        feats = h_long.mean(dim=2) if pooled else None  # (B, D)
        return ObjectiveOutput(loss, logs, positive_logits=pos, features=feats)
