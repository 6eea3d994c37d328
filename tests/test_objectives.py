"""Contract tests over every registered objective, built-in and plugin (entry points included):
builds from defaults; finite loss on a tiny CPU batch; gradients reach the encoder; teachers are
frozen and change only in ``on_after_optimizer_step``; positive logits have the documented shape
and rows; the loss falls when training on a fixed batch; and a CPU ``ssvrl fit`` runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from ssvrl.augment import MultiViewAugment
from ssvrl.backbones import build_backbone
from ssvrl.engine.optim import param_groups
from ssvrl.objectives import OBJECTIVES, Objective, ObjectiveConfig, ObjectiveOutput
from ssvrl.objectives.entry_points import load_entry_points

load_entry_points()  # plugins installed in the environment join the parametrisation
NAMES = OBJECTIVES.names()
ROOT = Path(__file__).resolve().parents[1]


def _moving_clips(B: int, T: int, g: torch.Generator, size: int = 40) -> torch.Tensor:
    """uint8 (B, 3, T, size, size): a static noisy background and a bright square that moves
    with a per-video velocity, so motion maps (MCL, FAME) have something to find."""
    clips = torch.randint(0, 120, (B, 3, 1, size, size), generator=g).repeat(1, 1, T, 1, 1)
    start = torch.randint(4, size - 16, (B, 2), generator=g)
    velocity = torch.randint(-2, 3, (B, 2), generator=g)
    for b in range(B):
        for t in range(T):
            y, x = (start[b] + t * velocity[b]).clamp(0, size - 12).tolist()
            clips[b, :, t, y : y + 12, x : x + 12] = 230
    return clips.to(torch.uint8)


def _batch(objective: Objective, B: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Augmented views (and their motion companions) as the engine builds them."""
    g = torch.Generator().manual_seed(seed)
    clips, seeds = {}, {}
    for k, v in enumerate(objective.views()):
        clips[v.name] = _moving_clips(B, v.frames, g)
        seeds[v.name] = torch.arange(B) + 100 * k + 1000 * seed
    return MultiViewAugment(objective.views())(clips, seeds)


def _small(name: str) -> ObjectiveConfig:
    """The objective's default config, shrunk to a CPU-sized batch where it has the knobs."""
    cfg = OBJECTIVES.get(name).Config()
    fields = cfg.__dataclass_fields__
    kw: dict[str, object] = {}
    small = {
        "frames": 4,
        "proj_hidden": 32,
        "proj_dim": 16,
        "queue_size": 12,
        "out_dim": 64,  # DINO-style heads (SVT)
        "bottleneck_dim": 16,
    }
    for key, value in small.items():
        if key in fields:
            kw[key] = value
    if "augment" in fields:
        kw["augment"] = replace(cfg.augment, crop_size=32)  # type: ignore[attr-defined]
    if "views" in fields and cfg.views:  # type: ignore[attr-defined]
        # View lists (SVT): the same names and counts, CPU-sized frames and crops.
        kw["views"] = tuple(
            replace(
                v,
                frames=min(v.frames, 4),
                stride=1,
                fps=None,
                augment=replace(v.augment, crop_size=32 if i == 0 else 16),
            )
            for i, v in enumerate(cfg.views)  # type: ignore[attr-defined]
        )
    return replace(cfg, **kw)


def _build(name: str, width: int = 8) -> tuple[nn.Module, Objective]:
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=width)
    objective = OBJECTIVES.get(name)(_small(name), encoder.num_features)
    for teacher in objective.teacher_modules():  # as the engine does
        teacher.requires_grad_(False)
    return encoder, objective


def _run(objective: Objective, encoder: nn.Module, views: dict) -> ObjectiveOutput:
    """What the engine's training_step calls (forward plus the YAML add-ons)."""
    if objective.supports_repeats:
        B = len(next(iter(views.values())))
        return objective.run(encoder, views, video_ids=torch.arange(B))  # distinct videos
    return objective.run(encoder, views)


def _teacher_params(objective: Objective) -> list[torch.Tensor]:
    return [p for t in objective.teacher_modules() for p in t.parameters()]


def test_the_plugin_example_is_registered() -> None:
    assert {"cvrl", "moco", "simclr", "vicreg"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_builds_from_defaults(name: str) -> None:
    cls = OBJECTIVES.get(name)
    cfg = cls.Config()
    assert cfg.name == name  # the config's default name is its registry name
    objective = cls(cfg, 64)
    assert objective.views() and len({v.name for v in objective.views()}) == len(objective.views())
    assert objective.clip_sampler() is not None


@pytest.mark.parametrize("name", NAMES)
def test_contract(name: str) -> None:
    encoder, objective = _build(name)
    views = _batch(objective)
    assert {v.name for v in objective.views()} <= set(views)
    out = _run(objective, encoder, views)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert all(not v.requires_grad for v in out.logs.values())
    out.loss.backward()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    for p in _teacher_params(objective):
        assert p.grad is None and not p.requires_grad


@pytest.mark.parametrize("name", NAMES)
def test_positive_logits_are_the_anchor_rows_of_the_first_encoder_call(name: str) -> None:
    encoder, objective = _build(name)
    views = _batch(objective, B=4)
    # The stem (first layer with weights) sees every encoder pass, whichever method runs it.
    stem = next(m for m in encoder.modules() if not list(m.children()) and list(m.parameters()))
    calls: list[torch.Tensor] = []
    handle = stem.register_forward_pre_hook(lambda _m, args: calls.append(args[0]))
    out = _run(objective, encoder, views)
    handle.remove()
    cls = type(objective)
    assert (out.positive_logits is not None) == cls.provides_positive_logits
    if out.positive_logits is None:
        return
    assert out.positive_logits.shape == (4,) and out.positive_logits.requires_grad
    anchor = cls.anchor_view or objective.views()[0].name
    assert torch.equal(calls[0][:4], views[anchor])


@pytest.mark.parametrize("name", NAMES)
def test_teachers_change_only_in_the_hook(name: str) -> None:
    encoder, objective = _build(name)
    views = _batch(objective)
    opt = torch.optim.SGD(param_groups([encoder, objective], 0.0), lr=0.1)

    def step() -> None:
        out = _run(objective, encoder, views)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    step()  # lazily made teachers (a copy of the encoder) exist after the first forward
    objective.on_after_optimizer_step(encoder, 0.1)
    teacher = _teacher_params(objective)
    frozen = {id(p) for p in teacher}
    assert not any(id(p) in frozen for g in opt.param_groups for p in g["params"])
    before = [p.detach().clone() for p in teacher]
    step()
    assert all(torch.equal(a, b) for a, b in zip(before, _teacher_params(objective), strict=True))
    objective.on_after_optimizer_step(encoder, 0.2)
    if teacher:  # an EMA teacher with momentum < 1 moves towards the student that just moved
        after = _teacher_params(objective)
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases_on_fixed_batch(name: str) -> None:
    encoder, objective = _build(name)
    views = _batch(objective, B=6)
    opt = torch.optim.Adam(param_groups([encoder, objective], 0.0), lr=1e-3)
    losses = []
    for _ in range(17):
        out = _run(objective, encoder, views)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        objective.on_after_optimizer_step(encoder, 0.5)
        losses.append(float(out.loss.detach()))
    # The first two steps fill queues that start as random keys (too easy negatives).
    assert losses[-1] < 0.7 * max(losses[:3])


# --------------------------------------------------------------------- CPU fit smoke runs
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    spec = SynthSpec(num_classes=3, groups=4, clips_per_group=2, frames=40, seed=3)
    write_synthetic_dataset(out, spec, workers=1)
    return out


def _fit_overrides(name: str, data: Path, out: Path) -> list[str]:
    """Data, budget (1 epoch of a few steps) and the objective's size knobs it has."""
    fields = OBJECTIVES.get(name).Config.__dataclass_fields__
    shrink = {
        "frames": 4,
        "stride": 2,
        "proj_hidden": 32,
        "proj_dim": 16,
        "queue_size": 16,
        "out_dim": 64,
        "bottleneck_dim": 16,
    }
    args = [f"objective.{k}={v}" for k, v in shrink.items() if k in fields]
    if "augment" in fields:
        args.append("objective.augment.crop_size=32")
    if "views" in fields:  # view lists (SVT): 2 global + 2 local, CPU-sized
        args.append(
            "objective.views=[{name: global, count: 2, frames: 4, augment: {crop_size: 32}},"
            " {name: local, count: 2, frames: 2, augment: {crop_size: 16}}]"
        )
    return [
        *args,
        f"objective.name={name}",
        f"data.root={data / 'videos'}",
        f"data.annotations={data / 'annotations'}",
        f"out_dir={out}",
        f"name=smoke_{name}",
        "backbone.name=small3d",
        "backbone.width=4",
        "data.batch_size=8",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_fit_smoke(name: str, tiny_data: Path, tmp_path: Path) -> None:
    from ssvrl.cli import main

    config = tmp_path / "smoke.yaml"
    base = ROOT / "experiments" / "_base"
    config.write_text(f"inherit: [{base / 'synthetic.yaml'}, {base / 'cpu.yaml'}]\n")
    assert main(["fit", str(config), *_fit_overrides(name, tiny_data, tmp_path)]) == 0
    run = tmp_path / f"smoke_{name}" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "train/loss" in (run / "metrics.csv").read_text()
