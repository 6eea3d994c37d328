"""SVT: Self-supervised Video Transformer (Ranasinghe et al., CVPR 2022).

Self-distillation without negatives (DINO, Caron et al., ICCV 2021) across views of one video
that differ in spatial size AND in frame rate (SVT Sec. 3.1 "spatiotemporal views"):

- views (``views:``, a :class:`~ssvrl.objectives.base.ViewConfig` list): global views (default
  2 x 8 frames at 224 px, crop scale 0.4-1) go through the teacher and the student; local views
  (default 8 at 96 px, scale 0.05-0.4, 2/4/8/16 frames at 2/4/8/16 fps) through the student
  only. ``teacher_views`` names the ViewConfig entries the teacher sees. One backbone takes all
  of them: the video ViT interpolates its positional embeddings per view (SVT Sec. 3.2,
  :mod:`ssvrl.backbones.vit`);
- student = encoder + :class:`~ssvrl.heads.dino.DINOHead`; teacher = EMA copies of both
  (:class:`~ssvrl.objectives.momentum.MomentumCopy`), momentum from 0.996 to 1 on a cosine
  over training (DINO Sec. 3.1 "Teacher network");
- ``head_bn`` (off by default): batch norm after each hidden linear layer of both heads, DINO's
  ``use_bn_in_head`` option (Caron et al., ICCV 2021, official code ``--use_bn_in_head``; the
  paper's ViTs are "entirely BN-free", Sec. 3.1). For convnet encoders such as ``small3d``,
  whose pooled post-ReLU features share a large common mean: in ssvrl's CPU runs the BN-free
  head's teacher drifted to a uniform output, ``head_bn: true`` trained stably. The teacher
  head starts equal to the student's; its running statistics are its own (only parameters
  follow the EMA, as in DINO);
- loss (:func:`~ssvrl.losses.dino.dino_loss`, DINO Eq. 3, SVT Sec. 3.3 "cross-view
  correspondence" and "motion correspondence"): every student view against each teacher view
  except itself; teacher outputs centred (EMA centre, momentum 0.9, all-reduced across processes)
  and sharpened (temperature warmed up linearly from 0.04 to 0.07 over the first 30 % of
  training, DINO Appendix "teacher temperature"), student temperature 0.1;
- optimisation (DINO Sec. 4 / Appendix, kept by SVT): AdamW with linear warm-up and cosine decay
  (engine ``optim``), weight decay on a cosine from ``optim.weight_decay`` (0.04) to
  ``weight_decay_end`` (0.4), gradients clipped (``trainer.gradient_clip_val``), the head's last
  layer frozen for ``freeze_last_layer_epochs`` (1); the last two happen in
  :meth:`SVT.on_before_optimizer_step`, which the engine calls after backward, before clipping and
  the optimizer step.

Collapse watch (DINO Sec. 5.3, Fig. 7: collapse shows as a teacher entropy at 0 or at ``log K``
with the teacher-student KL at 0): logged every step are ``teacher_entropy`` (the teacher's
mean entropy over ``log K``, in [0, 1]) and ``teacher_student_kl`` (nats); every
``collapse_check_every`` steps after the first 10 % of training they are read and a warning is
logged once when they reach collapse levels (:mod:`ssvrl.objectives.svt_collapse`). The spread
of the features themselves is the engine's, for every objective (``train/embed_std``,
:mod:`ssvrl.engine.collapse`).

Departures: DINO clips gradients per parameter tensor (norm 3.0); the engine clips the total
norm (set ``trainer.gradient_clip_val``). DINO's two global crops have different blur and
solarisation probabilities; one ``global`` entry with ``count: 2`` shares a recipe (list two
entries in ``views`` and both in ``teacher_views`` to differ). Schedules follow the engine's
``progress`` (fraction of training steps), not epochs; the teacher runs with dropout and
stochastic depth off (DINO's teacher has none), its batch norm (CNN backbones) in train mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ssvrl.augment import AugmentConfig
from ssvrl.heads.dino import DINOHead
from ssvrl.losses.dino import dino_loss, view_pairs
from ssvrl.objectives.base import (
    OBJECTIVES,
    Objective,
    ObjectiveConfig,
    ObjectiveOutput,
    ViewConfig,
    ViewSpec,
    expand_views,
)
from ssvrl.objectives.distill import cosine_ramp, encode_views, quiet_teacher
from ssvrl.objectives.momentum import MomentumCopy, ema_
from ssvrl.objectives.svt_collapse import (
    COLLAPSE_GRACE,
    collapse_kinds,
    teacher_stats,
    warn_collapse,
)
from ssvrl.utils.dist import all_reduce_mean

_GLOBAL = AugmentConfig(crop_size=224, scale=(0.4, 1.0), blur_p=0.5, solarize_p=0.1)
_LOCAL = AugmentConfig(crop_size=96, scale=(0.05, 0.4), blur_p=0.5)
PAPER_VIEWS: tuple[ViewConfig, ...] = (
    ViewConfig("global", frames=8, stride=8, fps=4, count=2, augment=_GLOBAL),
    *(
        ViewConfig(f"local_t{t}", frames=t, stride=max(32 // t, 1), fps=t, count=2, augment=_LOCAL)
        for t in (2, 4, 8, 16)
    ),
)
"""SVT Sec. 3.1 / 4: 2 global views (8 frames, 224 px) and 8 local views (96 px) whose frame
counts and rates vary (2, 4, 8, 16 frames over about one second)."""


@dataclass(frozen=True)
class SVTConfig(ObjectiveConfig):
    name: str = "svt"
    views: tuple[ViewConfig, ...] = PAPER_VIEWS
    teacher_views: tuple[str, ...] = ("global",)  # ViewConfig names the teacher sees
    out_dim: int = 65536  # K, DINO's output dimension
    proj_hidden: int = 2048
    bottleneck_dim: int = 256
    proj_layers: int = 3
    norm_last_layer: bool = True  # DINO: True for stability (False learns the norms)
    head_bn: bool = False  # BN after each hidden layer of both heads (DINO's use_bn_in_head)
    student_temp: float = 0.1
    teacher_temp: float = 0.07  # after warm-up
    warmup_teacher_temp: float = 0.04
    teacher_temp_warmup: float = 0.3  # fraction of training (DINO: 30 epochs of 100)
    center_momentum: float = 0.9
    momentum: float = 0.996  # EMA of the teacher at the start ...
    momentum_end: float = 1.0  # ... and at the end (cosine)
    freeze_last_layer_epochs: int = 1
    weight_decay_end: float | None = 0.4  # cosine from optim.weight_decay; None: constant
    collapse_check_every: int = 20  # steps between collapse checks (each reads 2 scalars)

    def __post_init__(self) -> None:
        object.__setattr__(self, "views", tuple(self.views))
        object.__setattr__(self, "teacher_views", tuple(self.teacher_views))
        if not all(isinstance(v, ViewConfig) for v in self.views):
            return  # the YAML loader's first pass (items still mappings); checked on the second
        names = [v.name for v in self.views]
        missing = sorted(set(self.teacher_views) - set(names))
        if missing or not self.teacher_views:
            raise ValueError(f"teacher_views {list(self.teacher_views)}: not in views {names}")
        expand_views(self.views)  # unique names, counts >= 1
        if min(self.student_temp, self.teacher_temp, self.warmup_teacher_temp) <= 0:
            raise ValueError("temperatures must be > 0")
        if not 0 <= self.momentum <= self.momentum_end <= 1:
            raise ValueError(f"need 0 <= momentum <= momentum_end <= 1, got {self}")
        if not 0 <= self.center_momentum < 1 or self.out_dim < 1:
            raise ValueError("center_momentum must be in [0, 1) and out_dim >= 1")


def teacher_temperature(cfg: SVTConfig, progress: float) -> float:
    """Linear from ``warmup_teacher_temp`` to ``teacher_temp`` over ``teacher_temp_warmup``."""
    if cfg.teacher_temp_warmup <= 0 or progress >= cfg.teacher_temp_warmup:
        return cfg.teacher_temp
    frac = max(progress, 0.0) / cfg.teacher_temp_warmup
    return cfg.warmup_teacher_temp + (cfg.teacher_temp - cfg.warmup_teacher_temp) * frac


@OBJECTIVES.register("svt")
class SVT(Objective):
    """Student (all views) distils an EMA teacher (global views); see the module docstring."""

    Config = SVTConfig
    supports_repeats = True  # no negatives: repeated samples of a video change nothing
    cfg: SVTConfig
    center: torch.Tensor

    def __init__(self, cfg: SVTConfig, embed_dim: int) -> None:
        super().__init__(cfg, embed_dim)
        self.head = DINOHead(
            embed_dim,
            cfg.out_dim,
            cfg.proj_hidden,
            cfg.bottleneck_dim,
            cfg.proj_layers,
            cfg.norm_last_layer,
            use_bn=cfg.head_bn,
        )
        self.teacher_head = DINOHead(
            embed_dim,
            cfg.out_dim,
            cfg.proj_hidden,
            cfg.bottleneck_dim,
            cfg.proj_layers,
            cfg.norm_last_layer,
            use_bn=cfg.head_bn,
        )
        self.teacher_head.load_state_dict(self.head.state_dict())  # starts equal (DINO)
        self.teacher_head.requires_grad_(False)
        self.teacher_encoder = MomentumCopy()  # the encoder's copy, made at the first forward
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))
        self.student_names = [s.name for s in expand_views(cfg.views)]
        teacher = set(cfg.teacher_views)
        self.teacher_names = [
            s.name for c in cfg.views if c.name in teacher for s in expand_views([c])
        ]
        self.pairs = view_pairs(self.teacher_names, self.student_names)
        self.progress = 0.0  # fraction of training, from the engine's hooks
        self.steps = 0
        self._pending_center: torch.Tensor | None = None
        self._stats: dict[str, torch.Tensor] = {}
        self._warned: set[str] = set()

    def views(self) -> tuple[ViewSpec, ...]:
        return expand_views(self.cfg.views)

    def teacher_modules(self) -> list[nn.Module]:
        return [self.teacher_encoder, self.teacher_head]

    def forward(  # type: ignore[override]
        self,
        encoder: nn.Module,
        views: dict[str, torch.Tensor],
        video_ids: torch.Tensor | None = None,
    ) -> ObjectiveOutput:
        c = self.cfg
        teacher = self.teacher_encoder.get(encoder)  # first call: the copy is made here
        quiet_teacher(teacher)
        Vs, Vt = len(self.student_names), len(self.teacher_names)
        B = views[self.student_names[0]].shape[0]
        feats = encode_views(encoder, [views[n] for n in self.student_names])  # (Vs*B, D)
        student = self.head(feats).float().view(Vs, B, -1)  # (Vs, B, K)
        with torch.no_grad():
            t_feats = encode_views(teacher, [views[n] for n in self.teacher_names])
            t_out = self.teacher_head(t_feats).float().view(Vt, B, -1)  # (Vt, B, K)
        tau_t = teacher_temperature(c, self.progress)
        loss = dino_loss(student, t_out, self.center, self.pairs, c.student_temp, tau_t)
        self._pending_center = t_out.mean(dim=(0, 1)).detach()  # (K,), applied in the hook
        self._stats, pair_entropy = teacher_stats(loss, t_out, self.center, tau_t, self.pairs)
        logs = {**self._stats, "teacher_temp": torch.tensor(tau_t)}
        # KL form: the same gradients (the teacher's entropy is a constant for the student).
        return ObjectiveOutput(
            loss - pair_entropy,
            {**logs, "dino_ce": loss.detach()},
            features=feats[:B],  # (B, D): the first student view, rows 0..B-1 of the first call
        )

    # ------------------------------------------------------------------------ engine hooks
    def on_before_optimizer_step(
        self, optimizer: torch.optim.Optimizer, progress: float, epoch: int
    ) -> None:
        """After backward, before clipping and the step: weight-decay schedule (decayed groups,
        those whose ``weight_decay`` started > 0) and the frozen last layer (grads dropped, so
        AdamW neither moves nor decays it, as DINO's ``cancel_gradients_last_layer``)."""
        self.progress = progress
        end = self.cfg.weight_decay_end
        if end is not None:
            for group in optimizer.param_groups:
                base = group.setdefault("base_weight_decay", group["weight_decay"])
                if base > 0:
                    group["weight_decay"] = cosine_ramp(base, end, progress)
        if epoch < self.cfg.freeze_last_layer_epochs:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def momentum_at(self, progress: float) -> float:
        """Teacher EMA momentum: ``momentum`` -> ``momentum_end`` on a cosine (DINO Sec. 3.1)."""
        return cosine_ramp(self.cfg.momentum, self.cfg.momentum_end, progress)

    @torch.no_grad()
    def on_after_optimizer_step(self, encoder: nn.Module, progress: float) -> None:
        m = self.momentum_at(progress)
        self.teacher_encoder.update(encoder, m)
        ema_(self.teacher_head.parameters(), self.head.parameters(), m)
        if self._pending_center is not None:
            # Every rank gets here after its forward, so every rank joins the all-reduce.
            batch_center = all_reduce_mean(self._pending_center)  # (K,) mean over all ranks
            cm = self.cfg.center_momentum
            self.center.mul_(cm).add_(batch_center.to(self.center.dtype), alpha=1 - cm)
            self._pending_center = None
        self.progress = progress
        self.steps += 1
        every = self.cfg.collapse_check_every
        if every > 0 and self.steps % every == 0 and progress >= COLLAPSE_GRACE:
            self.check_collapse()

    def check_collapse(self) -> list[str]:
        """Warn (once per kind) when the latest statistics are at collapse levels; returns the
        kinds found this time."""
        if not self._stats:
            return []
        s = {k: float(v) for k, v in self._stats.items()}  # host sync, every few steps only
        found = collapse_kinds(s)
        for kind in found:
            if kind not in self._warned:
                self._warned.add(kind)
                warn_collapse(kind, self.progress, s)
        return found

    # ------------------------------------------------------------------- checkpoint state
    def get_extra_state(self) -> Any:
        return {"progress": self.progress, "steps": self.steps}

    def set_extra_state(self, state: Any) -> None:
        self.progress = float(state["progress"])
        self.steps = int(state["steps"])
