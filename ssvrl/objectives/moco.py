"""MoCo for video: a momentum key encoder and a queue of negatives (the base of FAME and MCL).

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020, with
the MLP head of Chen et al., "Improved Baselines with Momentum Contrastive Learning" (MoCo v2),
2020, applied to two clips of a video as FAME (Ding et al., CVPR 2022) and MCL (Li et al.,
ICCV 2021) do:

- query ``q = normalize(g(f(x1)))``: the student encoder ``f`` and an MLP head ``g``;
- key ``k = normalize(g_k(f_k(x2)))``: momentum copies, ``theta_k <- m theta_k + (1 - m)
  theta_q`` (Eq. 2) after every optimizer step, initialised equal to the query side;
- loss per query (Eq. 1): ``-log exp(q.k+/tau) / (exp(q.k+/tau) + sum_i exp(q.k_i/tau))``
  over the K keys ``k_i`` of the queue;
- symmetric: both clips serve as query (the other as its key) and the two losses are averaged,
  as FAME's released training does; the keys of both clips are enqueued.

Departures, each for a reason:
- The queue is updated in :meth:`MoCo.on_after_optimizer_step`, not inside ``forward``
  (Algorithm 1 enqueues right after the loss): the same order of events, but a step the engine
  skips leaves the queue untouched. Keys are gathered from all processes (Sec. 3.2: the
  dictionary is the union of the mini-batches), so the queue is identical on every rank.
- Both directions of the symmetric loss use the queue as it was before this step. FAME's code
  enqueues the first direction's keys before computing the second, so the second query meets
  the key of its own video among the negatives; here it does not.
- Shuffling BN (Sec. 3.3) is done across processes; on one process it changes nothing (the
  statistics are the whole batch's in any order) and is skipped, as in MoCo's 1-GPU runs.

Default hyper-parameters are MoCo's (tau 0.07, m 0.999, K 65536; dimension 128; v2's 2-layer
MLP head with hidden 2048 and no BN). FAME's released ``train.py`` uses tau 0.1, K 65536 on
Kinetics-400 and K 2048 on UCF101, and m 0.999: set them in YAML (experiments/moco/).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.augment import AugmentConfig, AugmentOverride, apply_override
from ssvrl.heads.mlp import mlp_head
from ssvrl.losses.precision import float32_math
from ssvrl.objectives.base import OBJECTIVES, Objective, ObjectiveConfig, ObjectiveOutput, ViewSpec
from ssvrl.objectives.momentum import MomentumCopy, ema_, shuffled_forward
from ssvrl.utils.dist import gather_no_grad

VIEWS = ("clip1", "clip2")


@dataclass(frozen=True)
class MoCoConfig(ObjectiveConfig):
    name: str = "moco"
    frames: int = 16  # T per clip (FAME: 16 frames at 112 px)
    stride: int = 2  # temporal stride inside a clip; clips start independently (uniform)
    temperature: float = 0.07  # tau of Eq. 1 (MoCo Sec. 3.3; FAME's release: 0.1)
    momentum: float = 0.999  # m of Eq. 2; a run of a few hundred steps wants ~0.99
    queue_size: int = 65536  # K negatives; keep it well below 2 x the number of train videos
    proj_hidden: int = 2048  # MoCo v2 MLP head: Linear-ReLU-Linear
    proj_dim: int = 128
    proj_layers: int = 2
    proj_bn: bool = False  # batch norm inside the head (MoCo v2: none)
    symmetric: bool = True  # both clips as query; False: clip1 query, clip2 key only
    shuffle_bn: bool = True  # shuffle the key batch across processes (no-op on one process)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # both views' recipe
    # Per-view changes of ``augment`` by view name (clip1, clip2), see ssvrl.augment.override.
    view_augment: dict[str, AugmentOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.view_augment) - set(VIEWS)
        if unknown:
            raise ValueError(f"view_augment: unknown view(s) {sorted(unknown)}; MoCo has clip1/2")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum}")
        if self.queue_size < 1 or self.temperature <= 0:
            raise ValueError("queue_size must be >= 1 and temperature > 0")


def moco_logits(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``(B, 1 + K)`` logits of Eq. 1: column 0 is ``q.k+``, then ``q.k_i`` for the queue, /tau.

    ``q`` (B, D), ``k`` (B, D) unit rows (row i of k is the positive of row i of q), ``queue``
    (K, D) unit rows.
    """
    with float32_math(q):  # float32 logits under any autocast (ssvrl.losses.precision)
        q, k, queue = q.float(), k.float(), queue.float()
        pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
        neg = q @ queue.T  # (B, K)
        return torch.cat([pos, neg], dim=1) / temperature  # (B, 1 + K)


@OBJECTIVES.register("moco")
class MoCo(Objective):
    """Query = student encoder + head; key = their momentum copies; negatives = a FIFO queue."""

    Config = MoCoConfig
    provides_positive_logits = True  # ObjectiveOutput.positive_logits: clip1 vs its positive
    cfg: MoCoConfig
    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(self, cfg: MoCoConfig, embed_dim: int) -> None:
        super().__init__(cfg, embed_dim)
        self.head = mlp_head(
            embed_dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers, batch_norm=cfg.proj_bn
        )
        self.key_head = copy.deepcopy(self.head)  # initialised equal to the query head
        self.key_head.requires_grad_(False)
        self.key_encoder = MomentumCopy()  # the encoder's copy, made at the first step
        # Random unit keys to start (as MoCo's code); a fixed generator makes every rank agree.
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(cfg.queue_size, cfg.proj_dim, generator=g, device="cpu")
        queue = F.normalize(noise, dim=1)
        self.register_buffer("queue", queue)  # (K, D)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))  # next slot
        # Keys of the latest forward, enqueued by the hook; a forward whose step is skipped is
        # replaced by the next one's keys instead of reaching the queue.
        self._pending_keys: torch.Tensor | None = None

    def views(self) -> tuple[ViewSpec, ...]:
        c = self.cfg
        return tuple(
            ViewSpec(name, c.frames, c.stride, apply_override(c.augment, c.view_augment.get(name)))
            for name in VIEWS
        )

    def teacher_modules(self) -> list[nn.Module]:
        return [self.key_encoder, self.key_head]

    def query(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` unit queries, with grad; float32 even under autocast."""
        return self.project(encoder(x))

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, D_enc)`` encoder features -> ``(B, D)`` unit queries (the query head)."""
        return F.normalize(self.head(feats).float(), dim=1)

    @torch.no_grad()
    def key(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` unit keys from the momentum encoder and head, no grad."""
        key_encoder = self.key_encoder.get(encoder)
        feats = shuffled_forward(key_encoder, x) if self.cfg.shuffle_bn else key_encoder(x)
        return F.normalize(self.key_head(feats).float(), dim=1)

    def forward(self, encoder: nn.Module, views: dict[str, torch.Tensor]) -> ObjectiveOutput:
        c = self.cfg
        x1, x2 = views["clip1"], views["clip2"]
        self.key_encoder.get(encoder)  # first call: the key encoder starts as the encoder
        f1 = encoder(x1)  # (B, D_enc): the first encoder call, rows = the anchors
        q1 = self.project(f1)  # (B, D)
        k2 = self.key(encoder, x2)  # (B, D)
        queue = self.queue.detach()  # (K, D) as before this step, for both directions
        logits = moco_logits(q1, k2, queue, c.temperature)  # (B, 1 + K)
        target = torch.zeros(q1.shape[0], dtype=torch.long, device=q1.device)
        loss = F.cross_entropy(logits, target)
        keys, all_logits = [k2], [logits]
        if c.symmetric:
            q2 = self.query(encoder, x2)
            k1 = self.key(encoder, x1)
            logits21 = moco_logits(q2, k1, queue, c.temperature)
            loss = (loss + F.cross_entropy(logits21, target)) / 2
            keys.insert(0, k1)
            all_logits.append(logits21)
        self._pending_keys = torch.cat(keys)  # (2B or B, D)
        with torch.no_grad():
            stacked = torch.cat(all_logits)
            acc = (stacked.argmax(dim=1) == 0).float().mean()  # (1+K)-way top-1
            std = q1.std(dim=0).mean()
        return ObjectiveOutput(
            loss,
            {"contrast_acc": acc, "embedding_std": std},
            positive_logits=logits[:, 0],
            features=f1,
        )

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """FIFO: overwrite the oldest ``len(keys)`` slots (the last K keys if more than K)."""
        K = self.queue.shape[0]
        keys = keys[-K:].to(self.queue.dtype)  # (n, D), n <= K
        n = keys.shape[0]
        slots = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % K  # (n,)
        self.queue.index_copy_(0, slots, keys)
        self.queue_ptr.copy_((self.queue_ptr + n) % K)

    @torch.no_grad()
    def on_after_optimizer_step(self, encoder: nn.Module, progress: float) -> None:
        m = self.cfg.momentum
        self.key_encoder.update(encoder, m)
        ema_(self.key_head.parameters(), self.head.parameters(), m)
        if self._pending_keys is not None:
            # Every rank gets here after its forward, so every rank joins the gather.
            self.enqueue(gather_no_grad(self._pending_keys))  # (P * 2B, D)
            self._pending_keys = None
