"""SVT's collapse watch: the teacher's entropy and the teacher-student KL, and the warning.

DINO (Caron et al., ICCV 2021, Sec. 5.3, Fig. 7) shows the two ways self-distillation
collapses: one output dominates (teacher entropy at 0) or the output is uniform (entropy at
``log K``), both with KL(teacher || student) at 0. Centring prevents the first and pushes
towards the second; sharpening (a low teacher temperature) does the opposite.
:class:`~ssvrl.objectives.svt.SVT` logs :func:`teacher_stats` every step (no host sync) and
reads them every few steps through :func:`collapse_kinds` / :func:`warn_collapse`.
"""

from __future__ import annotations

import logging
import math

import torch

from ssvrl.losses.dino import teacher_probs

log = logging.getLogger("ssvrl")

COLLAPSE_KL = 0.01  # nats
COLLAPSE_ENTROPY_LOW = 0.02  # fraction of log K
COLLAPSE_ENTROPY_HIGH = 0.98
# Each collapse wants the other force (module docstring).
COLLAPSE_ADVICE = {
    "one-output": "a higher teacher_temp (less sharpening) or a higher momentum",
    "uniform": "a lower teacher_temp (more sharpening) or a higher momentum",
}
COLLAPSE_GRACE = 0.1  # no checks in the first 10 % of training (a fresh network looks collapsed)


@torch.no_grad()
def teacher_stats(
    loss: torch.Tensor,
    t_out: torch.Tensor,
    center: torch.Tensor,
    tau_t: float,
    pairs: list[tuple[int, int]],
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``({teacher_entropy, teacher_student_kl}, pair_entropy)`` for teacher logits ``t_out``
    ``(Vt, B, K)`` and the DINO cross-entropy ``loss`` over the ``(teacher, student)`` pairs.

    ``teacher_entropy`` is the mean entropy over ``log K`` (in [0, 1]); ``pair_entropy`` the
    teacher entropy averaged as the loss averages its pairs, so ``loss - pair_entropy`` is the
    KL form of the loss (nats).
    """
    K = t_out.shape[-1]
    q = teacher_probs(t_out, center, tau_t)  # (Vt, B, K)
    entropy = -torch.xlogy(q, q).sum(dim=-1).mean(dim=1)  # (Vt,) nats
    pair_entropy = torch.stack([entropy[i] for i, _ in pairs]).mean()
    stats = {
        "teacher_entropy": entropy.mean() / math.log(K) if K > 1 else entropy.mean(),
        "teacher_student_kl": loss.detach() - pair_entropy,  # H(Pt, Ps) - H(Pt)
    }
    return stats, pair_entropy


def collapse_kinds(stats: dict[str, float]) -> list[str]:
    """The collapse kinds (``"one-output"``, ``"uniform"``) that ``stats`` are at."""
    if stats["teacher_student_kl"] >= COLLAPSE_KL:
        return []
    if stats["teacher_entropy"] < COLLAPSE_ENTROPY_LOW:
        return ["one-output"]
    if stats["teacher_entropy"] > COLLAPSE_ENTROPY_HIGH:
        return ["uniform"]
    return []


def warn_collapse(kind: str, progress: float, stats: dict[str, float]) -> None:
    """Log the collapse ``kind`` with the statistics and what to try."""
    log.warning(
        "SVT: %s collapse at progress %.2f (teacher entropy %.3f of log K, "
        "KL(teacher || student) %.4f nats). Try %s, a lower learning rate or "
        "norm_last_layer: true (DINO Sec. 5.3).",
        kind,
        progress,
        stats["teacher_entropy"],
        stats["teacher_student_kl"],
        COLLAPSE_ADVICE[kind],
    )
