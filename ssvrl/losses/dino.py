"""DINO's self-distillation loss (Caron et al., ICCV 2021, Sec. 3.1, Eq. 2-4 and Algorithm 1).

With ``P_s = softmax(g_s(x) / tau_s)`` for every student view and ``P_t = softmax((g_t(x) - c)
/ tau_t)`` for every teacher (global) view, both over ``K`` outputs, the loss is the
cross-entropy ``H(P_t, P_s) = -sum_k P_t[k] log P_s[k]`` averaged over the batch and over the
view pairs that are used (Eq. 3: every student view against every teacher view but itself).
Centring (subtracting ``c``, an EMA of the teacher's mean output) keeps one output from
dominating; sharpening (a low ``tau_t``) keeps the teacher from going uniform (Sec. 3.1
"Avoiding collapse").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ssvrl.losses.precision import check_temperature, float32_math


def view_pairs(teacher: Sequence[str], student: Sequence[str]) -> list[tuple[int, int]]:
    """``(teacher index, student index)`` for every student view and every teacher view that
    is not the same view (DINO Eq. 3, SVT Sec. 3.3: local and global views against each of the
    teacher's global views)."""
    pairs = [(i, j) for i, t in enumerate(teacher) for j, s in enumerate(student) if s != t]
    if not pairs:
        raise ValueError(f"no teacher/student view pairs from {list(teacher)} x {list(student)}")
    return pairs


def teacher_probs(teacher: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax((teacher - center) / temperature)`` over the last dim, float32, no grad."""
    check_temperature(temperature, "teacher_temp")
    with float32_math(teacher):
        return F.softmax((teacher.detach().float() - center.float()) / temperature, dim=-1)


def dino_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    center: torch.Tensor,
    pairs: Sequence[tuple[int, int]],
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """Mean over ``pairs`` of the batch-mean ``H(P_t, P_s)``.

    Args:
        student: ``(Vs, B, K)`` student logits, with grad.
        teacher: ``(Vt, B, K)`` teacher logits (detached here).
        center: ``(K,)`` or ``(1, K)`` centre.
        pairs: ``(teacher view, student view)`` indices (:func:`view_pairs`).
    """
    if student.shape[1:] != teacher.shape[1:]:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)}")
    check_temperature(student_temp, "student_temp")
    q = teacher_probs(teacher, center, teacher_temp)  # (Vt, B, K)
    with float32_math(student):  # log-probabilities in float32 under any autocast
        log_p = F.log_softmax(student.float() / student_temp, dim=-1)  # (Vs, B, K)
        # One pair at a time: a (B, K) temporary instead of (pairs, B, K) (K is 65536 in DINO).
        total = sum(-(q[i] * log_p[j]).sum(dim=-1).mean() for i, j in pairs)
    return total / len(pairs)  # type: ignore[return-value]
