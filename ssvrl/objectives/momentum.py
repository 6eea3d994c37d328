"""Momentum (EMA) teachers of modules an objective does not own, such as the encoder.

MoCo (He et al., CVPR 2020, Sec. 3.2) keeps a key encoder whose parameters follow the query
encoder's, ``theta_k <- m theta_k + (1 - m) theta_q`` (Eq. 2), initialised equal to it. An
objective receives the encoder only in :meth:`~ssvrl.objectives.base.Objective.forward` and
:meth:`~ssvrl.objectives.base.Objective.on_after_optimizer_step`, not in its constructor, so
:class:`MomentumCopy` deep-copies it lazily, at the first call, before any optimizer step:
the copy then equals the encoder's initial weights, exactly the paper's initialisation.

Checkpoints: the copy's tensors are saved under ``<prefix>net.``. Loading a checkpoint into a
fresh objective (resume) happens before the first forward, when there is nothing to load
into yet: the tensors are kept aside and loaded into the copy when it is made, so a resumed
run continues with the saved teacher, not a fresh copy of the student.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ssvrl.utils.dist import gather_no_grad, rank, world_size


@torch.no_grad()
def ema_(teacher: Iterable[torch.Tensor], student: Iterable[torch.Tensor], m: float) -> None:
    """``t <- m * t + (1 - m) * s`` for each pair, in place (MoCo Eq. 2)."""
    for t, s in zip(teacher, student, strict=True):
        t.mul_(m).add_(s.detach().to(t.dtype), alpha=1.0 - m)


class MomentumCopy(nn.Module):
    """A frozen EMA copy of a module passed in at call time; see the module docstring.

    Only parameters follow the EMA; buffers (batch-norm running statistics) are the copy's
    own, updated by its forward passes in train mode, as in MoCo's official code. Hooks
    registered on the source (e.g. an add-on capturing a layer's activations) are not copied.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_module("net", None)
        self._pending: dict[str, torch.Tensor] | None = None

    def get(self, source: nn.Module) -> nn.Module:
        """The copy, made from ``source`` (or from a loaded checkpoint) the first time."""
        net = self._modules["net"]
        if net is None:
            net = copy.deepcopy(source)
            net.requires_grad_(False)
            for p in net.parameters():
                p.grad = None
            for m in net.modules():  # the student's hooks (e.g. saliency capture) stay there
                m._forward_hooks.clear()
                m._forward_pre_hooks.clear()
                m._backward_hooks.clear()
                m._backward_pre_hooks.clear()
            if self._pending is not None:
                net.load_state_dict(self._pending)
                self._pending = None
            net.train(self.training)
            self.register_module("net", net)
        return net

    @torch.no_grad()
    def update(self, source: nn.Module, momentum: float) -> None:
        """One EMA step towards ``source``'s current parameters."""
        ema_(self.get(source).parameters(), source.parameters(), momentum)

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._modules["net"] is None and self._pending is not None:
            for key, value in self._pending.items():  # loaded but not yet materialised
                destination[prefix + "net." + key] = value

    def _load_from_state_dict(
        self, state_dict: Any, prefix: str, local_metadata: Any, strict: bool,
        missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str],
    ) -> None:  # fmt: skip
        if self._modules["net"] is None:
            mine = [k for k in state_dict if k.startswith(prefix + "net.")]
            if mine:
                self._pending = {k[len(prefix) + 4 :]: state_dict.pop(k) for k in mine}
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


@torch.no_grad()
def shuffled_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with the batch shuffled across processes (MoCo's shuffling BN, Sec. 3.3).

    Batch norm computes statistics per process; if a query and its key share a process's
    sub-batch, the model can "cheat" through them. The clips of all processes are gathered,
    permuted by rank 0's random order, each process encodes its share of the permuted batch,
    and the outputs are returned in the original order. On one process this is ``module(x)``:
    the statistics are those of the whole batch whatever the order, so there is nothing to
    shuffle (MoCo's remedy needs several BN groups).
    """
    P = world_size()
    if P == 1:
        return module(x)
    B = x.shape[0]
    xs = gather_no_grad(x)  # (P*B, ...)
    perm = torch.randperm(P * B, device=x.device)
    dist.broadcast(perm, src=0)
    mine = perm.view(P, B)[rank()]  # (B,) rows this process encodes
    out = gather_no_grad(module(xs[mine]))  # (P*B, D) in permuted order
    unshuffled = torch.empty_like(out)
    unshuffled[perm] = out
    return unshuffled[rank() * B : (rank() + 1) * B]
