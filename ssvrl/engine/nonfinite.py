"""Skip a training step whose loss or gradients are not finite, on every rank; stop after several.

One bad batch (a decoder glitch, an overflow) must not end or poison a long run, and a run that
has diverged must not burn its remaining budget producing NaN. After backward and before the
optimizer step (Lightning's ``on_before_optimizer_step``) :class:`NonFiniteGuard` decides:

- a *true* skip: every parameter's ``.grad`` is set to None, and torch's optimizers leave a
  parameter without gradient completely alone (no update, no weight decay, no moment or
  ``step`` change: ``torch.optim`` only iterates parameters whose ``grad is not None``);
- the same decision on every rank: DDP averages gradients, so a non-finite gradient on one rank
  is on all of them, but a non-finite *loss* can sit on one rank with finite gradients (a NaN
  term without a gradient path), so both flags are all-reduced with MAX before deciding;
- buffers changed by the forward (batch-norm running statistics of the backbone, heads and
  teachers) are put back from :class:`BufferSnapshot`, taken just before the forward; state that
  changes outside gradient descent (EMA teachers, MoCo's queue, DINO/SVT's centre) changes only
  in the objective's ``on_after_optimizer_step`` (the contract of :mod:`ssvrl.objectives.base`),
  which the engine does not call for a skipped step;
- ``max_consecutive`` skipped steps in a row raise :class:`NonFiniteTrainingError` on every rank.

``16-mixed``: ``torch.amp.GradScaler`` starts at a scale of 2**16 and halves it after every step
whose (scaled) gradients overflow, skipping that step itself; a few such steps at the start are
its calibration, not a fault. So with a scaler, a step whose loss is finite but whose gradients
are not is left to the scaler and neither counted nor skipped by the guard, unless the scale is
already below 1: gradients that overflow float16 while scaled *down* are the model's own, not
the scaling's. A non-finite loss always counts (the scale does not enter the forward).
``bf16-mixed`` and ``32-true`` have no scaler: every non-finite step counts.

Host syncs: one per step, reading one scalar (the reduced flags) to decide; the scale is read
only on steps whose gradients overflowed under a scaler (which syncs on its own there anyway).
A skip must be known on the host before ``optimizer.step`` runs, so this one read is the
floor for optimizers that cannot skip on the device (only torch's fused optimizers take a
``found_inf`` tensor). ``max_consecutive = 0`` turns the guard off: no sync, no snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from ssvrl.utils.dist import is_dist, rank

log = logging.getLogger("ssvrl")

Verdict = Literal["ok", "skip", "scaler"]


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or non-finite gradients."""


class BufferSnapshot:
    """A copy of every buffer of ``module``, refreshed in place before each forward.

    The copy buffers are allocated once (again only when the set of buffers changes) and filled
    with one ``torch._foreach_copy_``: on a GPU a single multi-tensor kernel, no allocation and
    no host sync. Buffers created after :meth:`take` (a teacher copy made lazily by the first
    forward) cannot be put back; :meth:`restore` returns their names.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._names: list[str] = []
        self._live: list[torch.Tensor] = []
        self._saved: list[torch.Tensor] = []
        self._layout: list[tuple[int, torch.Size, torch.dtype, torch.device]] = []

    @torch.no_grad()
    def take(self) -> None:
        named = list(self.module.named_buffers())
        layout = [(id(b), b.shape, b.dtype, b.device) for _, b in named]
        if layout != self._layout:
            self._saved = [torch.empty_like(b) for _, b in named]
            self._layout = layout
        self._names = [n for n, _ in named]
        self._live = [b for _, b in named]
        if self._live:
            torch._foreach_copy_(self._saved, self._live)

    @torch.no_grad()
    def restore(self) -> list[str]:
        """Buffers back to the last :meth:`take`; returns the names that could not be."""
        current = dict(self.module.named_buffers())
        for name, old in zip(self._names, self._live, strict=True):
            if current.get(name) is not old and name in current:  # reassigned: put it back
                owner, _, attr = name.rpartition(".")
                self.module.get_submodule(owner)._buffers[attr] = old
        if self._live:
            torch._foreach_copy_(self._live, self._saved)
        return sorted(set(current) - set(self._names))


def nonfinite_flags(loss: torch.Tensor, grads: Iterable[torch.Tensor]) -> torch.Tensor:
    """``(2,)`` float: [loss not finite, any gradient not finite], all-reduced (MAX) over ranks.

    The gradient check is the total 2-norm (``torch.nn.utils.get_total_norm``, foreach kernels):
    NaN or inf if any element is, or if the norm itself overflows float32 (> ~1.8e19, an update
    no run survives either)."""
    grads = list(grads)
    loss_bad = ~torch.isfinite(loss.detach().float())  # 0-d bool
    if grads:
        total = torch.nn.utils.get_total_norm(grads, 2.0).to(loss_bad.device)
        grad_bad = ~torch.isfinite(total.float())
    else:
        grad_bad = torch.zeros_like(loss_bad)
    flags = torch.stack([loss_bad, grad_bad]).float()  # (2,)
    if is_dist():
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags


class NonFiniteGuard:
    """Counts and decides; the engine applies the decision (see the module docstring)."""

    def __init__(self, max_consecutive: int) -> None:
        if max_consecutive < 0:
            raise ValueError(
                f"trainer.max_nonfinite_steps must be >= 0 (0: guard off), got {max_consecutive}"
            )
        self.max_consecutive = max_consecutive
        self.consecutive = 0  # counted steps in a row
        self.skipped = 0  # counted steps in this run
        self.scaler_skips = 0  # left to the GradScaler (16-mixed calibration)

    @property
    def enabled(self) -> bool:
        return self.max_consecutive > 0

    def decide(
        self,
        flags: torch.Tensor,
        params: Iterable[nn.Parameter],
        step: int,
        scale: Callable[[], float] | None = None,
    ) -> Verdict:
        """Read ``flags`` (from :func:`nonfinite_flags`; the one host sync of the step) and act.

        ``scale``: the GradScaler's current scale, or None without a scaler. On ``"skip"`` the
        gradients of ``params`` are dropped; the caller restores buffers and skips the
        objective's post-step hook. Raises :class:`NonFiniteTrainingError` at the limit.
        """
        code = int((flags[0] * 2 + flags[1]).item())  # one scalar: 2 loss bad, 1 grads bad
        loss_bad, grad_bad = bool(code & 2), bool(code & 1)
        if not (loss_bad or grad_bad):
            self.consecutive = 0
            return "ok"
        if not loss_bad and scale is not None:
            current = scale()
            if current >= 1.0:  # the scaler skips this step and lowers its scale
                self.scaler_skips += 1
                return "scaler"
        for p in params:
            p.grad = None
        self.consecutive += 1
        self.skipped += 1
        what = "loss" if loss_bad else "gradients"
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteTrainingError(self.message(step, what))
        if rank() == 0:  # the same decision on every rank: said once
            log.warning(
                "step %d: non-finite %s (on at least one rank): update skipped on every rank, "
                "buffers restored (%d in a row, %d skipped so far; the run stops at "
                "trainer.max_nonfinite_steps=%d in a row)",
                step, what, self.consecutive, self.skipped, self.max_consecutive,
            )  # fmt: skip
        return "skip"

    def message(self, step: int, what: str) -> str:
        first = step - self.consecutive + 1
        return (
            f"training stopped at step {step}: {self.consecutive} consecutive steps "
            f"(steps {first}-{step}) had a non-finite {what} "
            f"(trainer.max_nonfinite_steps={self.max_consecutive}); their updates were skipped, "
            f"so the weights are those from before step {first}. Try: a lower optim.lr or a longer "
            "optim.warmup_epochs; trainer.precision=32-true (or bf16-mixed) instead of 16-mixed; "
            "trainer.gradient_clip_val > 0; and check the data for broken or blank videos "
            "(`ssvrl data check`). trainer.max_nonfinite_steps=0 turns this guard off."
        )
