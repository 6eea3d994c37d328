"""MoCo: the loss against Eq. 1 of He et al. written out, the FIFO queue, the EMA of Eq. 2, the
lazily made key encoder (frozen, checkpointed) and the queue on 2 gloo processes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssvrl.objectives.moco import MoCo, MoCoConfig
from ssvrl.objectives.momentum import shuffled_forward
from tests.dist_utils import run_distributed

B, C, T, S = 4, 3, 2, 4


def _encoder(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(C * T * S * S, 16))
    enc.num_features = 16  # type: ignore[assignment]
    return enc


def _moco(**kw: object) -> MoCo:
    torch.manual_seed(1)
    cfg = MoCoConfig(**{"queue_size": 10, "proj_hidden": 8, "proj_dim": 6, **kw})  # type: ignore[arg-type]
    return MoCo(cfg, 16)


def _views(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {v: torch.randn(B, C, T, S, S, generator=g) for v in ("clip1", "clip2")}


def slow_moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> float:
    """Eq. 1 literally, per query: -log exp(q.k+/tau) / (exp(q.k+/tau) + sum_i exp(q.k_i/tau))."""
    total = 0.0
    for i in range(q.shape[0]):
        pos = math.exp(float(q[i] @ k[i]) / tau)
        neg = sum(math.exp(float(q[i] @ key) / tau) for key in queue)
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


def _reference(obj: MoCo, enc: nn.Module, views: dict[str, torch.Tensor]) -> tuple[float, list]:
    """Loss and positive logits from the modules' outputs, in float64 and plain Python."""
    with torch.no_grad():
        q = {v: F.normalize(obj.head(enc(x)).double(), dim=1) for v, x in views.items()}
        key_enc = obj.key_encoder.get(enc)
        k = {v: F.normalize(obj.key_head(key_enc(x)).double(), dim=1) for v, x in views.items()}
    queue, tau = obj.queue.double(), obj.cfg.temperature
    loss = slow_moco_loss(q["clip1"], k["clip2"], queue, tau)
    if obj.cfg.symmetric:
        loss = (loss + slow_moco_loss(q["clip2"], k["clip1"], queue, tau)) / 2
    positives = [float(q["clip1"][i] @ k["clip2"][i]) / tau for i in range(B)]
    return loss, positives


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_loss_matches_eq1(symmetric: bool, tau: float) -> None:
    enc, obj = _encoder(), _moco(symmetric=symmetric, temperature=tau, momentum=0.5)
    opt = torch.optim.SGD([*enc.parameters(), *obj.parameters()], lr=0.5)
    for step in range(3):  # later steps: key side != query side, queue holds real keys
        views = _views(step)
        out = obj(enc, views)
        ref_loss, ref_pos = _reference(obj, enc, views)
        assert abs(out.loss.item() - ref_loss) < 1e-4 * max(1.0, ref_loss)
        assert out.positive_logits is not None and out.positive_logits.shape == (B,)
        expected = torch.tensor(ref_pos, dtype=torch.float64)
        assert torch.allclose(out.positive_logits.detach().double(), expected, atol=1e-4)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.on_after_optimizer_step(enc, 0.0)
    key_enc = obj.key_encoder.get(enc)
    assert not torch.allclose(key_enc[1].weight, enc[1].weight)  # the sides did diverge


def test_queue_is_fifo() -> None:
    obj = _moco(queue_size=5)
    keys = F.normalize(torch.randn(12, 6), dim=1)
    start = obj.queue.clone()
    obj.enqueue(keys[:3])  # slots 0..2
    assert torch.equal(obj.queue[:3], keys[:3]) and torch.equal(obj.queue[3:], start[3:])
    assert int(obj.queue_ptr) == 3
    obj.enqueue(keys[3:7])  # slots 3, 4 then wraps to 0, 1
    assert torch.equal(obj.queue, torch.stack([keys[5], keys[6], keys[2], keys[3], keys[4]]))
    assert int(obj.queue_ptr) == 2
    obj.enqueue(keys[:12])  # more than K: the last K survive, oldest at the pointer
    assert int(obj.queue_ptr) == (2 + 5) % 5
    order = [(int(obj.queue_ptr) + i) % 5 for i in range(5)]  # oldest -> newest
    assert torch.equal(obj.queue[order], keys[7:12])


def test_queue_changes_only_in_hook_with_this_steps_keys() -> None:
    enc, obj = _encoder(), _moco(queue_size=20)
    views = _views(0)
    before = obj.queue.clone()
    out = obj(enc, views)
    out.loss.backward()
    assert torch.equal(obj.queue, before)  # forward and backward leave the queue alone
    with torch.no_grad():
        key_enc = obj.key_encoder.get(enc)
        k = {v: F.normalize(obj.key_head(key_enc(x)), dim=1) for v, x in views.items()}
    obj.on_after_optimizer_step(enc, 0.0)
    assert torch.allclose(obj.queue[: 2 * B], torch.cat([k["clip1"], k["clip2"]]), atol=1e-6)
    assert torch.equal(obj.queue[2 * B :], before[2 * B :])
    obj.on_after_optimizer_step(enc, 0.0)  # a hook without a new forward enqueues nothing
    assert int(obj.queue_ptr) == 2 * B


def test_ema_formula_and_teacher_frozen() -> None:
    m = 0.9
    enc, obj = _encoder(), _moco(momentum=m)
    assert [type(t) for t in obj.teacher_modules()] == [type(obj.key_encoder), nn.Sequential]
    opt = torch.optim.SGD([*enc.parameters(), *obj.head.parameters()], lr=0.1)
    out = obj(enc, _views(0))
    key_enc = obj.key_encoder.get(enc)
    # Made at the first forward, equal to the encoder, frozen, and not the same tensors.
    for pk, pq in zip(key_enc.parameters(), enc.parameters(), strict=True):
        assert torch.equal(pk, pq) and pk.data_ptr() != pq.data_ptr() and not pk.requires_grad
    for pk, pq in zip(obj.key_head.parameters(), obj.head.parameters(), strict=True):
        assert torch.equal(pk, pq) and not pk.requires_grad
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    teacher = [*key_enc.parameters(), *obj.key_head.parameters()]
    assert all(p.grad is None for p in teacher)
    old = [p.clone() for p in teacher]
    student = [*enc.parameters(), *obj.head.parameters()]
    assert not all(torch.equal(o, s) for o, s in zip(old, student, strict=True))  # step moved q
    obj.on_after_optimizer_step(enc, 0.0)
    for new, o, s in zip(teacher, old, student, strict=True):
        assert torch.allclose(new, m * o + (1 - m) * s, atol=1e-7)


def test_key_encoder_checkpoint_round_trip() -> None:
    enc, obj = _encoder(), _moco(momentum=0.5)
    opt = torch.optim.SGD([*enc.parameters(), *obj.head.parameters()], lr=0.5)
    for step in range(2):
        out = obj(enc, _views(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.on_after_optimizer_step(enc, 0.0)
    state = obj.state_dict()
    assert any(k.startswith("key_encoder.net.") for k in state)
    fresh_enc, fresh = _encoder(seed=5), _moco(momentum=0.5)  # a resumed run, before step 1
    fresh.load_state_dict(state)  # strict: the key encoder's keys are accepted
    assert set(fresh.state_dict()) == set(state)  # and saved again before materialising
    key_enc = fresh.key_encoder.get(fresh_enc)
    saved = obj.key_encoder.get(enc).state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in key_enc.state_dict().items())
    assert torch.equal(fresh.queue, obj.queue) and int(fresh.queue_ptr) == int(obj.queue_ptr)


def test_key_encoder_drops_student_hooks() -> None:
    enc, obj = _encoder(), _moco()
    calls: list[int] = []
    enc[1].register_forward_hook(lambda *_: calls.append(1))
    obj(enc, _views(0))
    assert len(calls) == 2  # two query passes; the two key passes do not fire the hook


def _rank_fn(rank: int, world: int) -> tuple[list, int, float]:
    torch.set_num_threads(1)  # two processes on a small CPU
    torch.manual_seed(0)  # same initial weights on every rank, as DDP's broadcast makes them
    enc = nn.Sequential(  # batch norm, so the key pass goes through the shuffle
        nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(),
    )  # fmt: skip
    obj = MoCo(MoCoConfig(queue_size=24, proj_hidden=8, proj_dim=6, momentum=0.9), 4)
    student = [*enc.parameters(), *obj.head.parameters()]
    for step in range(3):
        g = torch.Generator().manual_seed(100 * rank + step)  # different clips per rank
        views = {v: torch.randn(2, 3, 2, 8, 8, generator=g) for v in ("clip1", "clip2")}
        out = obj(enc, views)
        grads = torch.autograd.grad(out.loss, student)
        with torch.no_grad():  # plain SGD by hand: torch.optim's first use costs seconds here
            for p, grad in zip(student, grads, strict=True):
                p -= 0.1 * grad
        obj.on_after_optimizer_step(enc, 0.0)
    # Shuffled forward of a batch-independent module returns exactly the unshuffled outputs.
    lin = nn.Linear(5, 3)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(rank))
    with torch.no_grad():
        err = float((shuffled_forward(lin, x) - lin(x)).abs().max())
    return obj.queue.tolist(), int(obj.queue_ptr), err


def test_queue_identical_across_two_processes() -> None:
    (q0, p0, e0), (q1, p1, e1) = run_distributed(_rank_fn, 2, timeout=120)
    assert p0 == p1 == (3 * 2 * 2 * 2) % 24  # 3 steps x 2 ranks x 2 clips x B=2 keys
    assert q0 == q1
    queue = torch.tensor(q0)
    # 24 slots: all real keys now (unit rows), keys of both ranks (rank-major per step).
    assert torch.allclose(queue.norm(dim=1), torch.ones(24), atol=1e-5)
    assert not torch.allclose(queue[:4], queue[4:8])
    assert e0 < 1e-6 and e1 < 1e-6
