"""Exact resume: a run resumed from a mid-epoch step checkpoint ends bit for bit where the
uninterrupted run ends, for CVRL, MoCo (momentum key encoder and queue; with a DataLoader
worker) and TEG (draws from the global RNG every step); plus the pieces: the data position
(the sampler continues the epoch, for any number of ranks and workers) and the RNG states.

Runs are in this process (``fit``); the SIGKILL / SIGTERM subprocess runs are in
test_preemption.py. The reference run copies each step checkpoint aside, as a killed run would
have left it.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ssvrl.cli import load_experiment
from ssvrl.data.epoch_sampler import EpochSampler
from tests.resume_utils import (
    assert_same_training_state,
    keep_step_checkpoints,
    load,
    one_thread,
    overrides,
    write_config,
    write_tiny_data,
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("resume_data"))


@pytest.mark.parametrize(
    "objective,workers,starts",
    [("cvrl", 0, ["step4.ckpt", "step8.ckpt"]),
     ("moco", 1, ["step4.ckpt", "epoch000.ckpt"]),
     ("teg", 0, ["step8.ckpt"])],
)  # fmt: skip
def test_resumed_runs_end_bitwise_equal(
    objective: str, workers: int, starts: list[str], tiny_data: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from ssvrl.engine.build import fit

    keep_step_checkpoints(monkeypatch)
    config = write_config(tmp_path)
    args = overrides(tiny_data, tmp_path, objective, f"data.num_workers={workers}",
                     "trainer.checkpoint_every_n_steps=2")  # fmt: skip
    cfg = load_experiment(str(config), args)
    with one_thread():
        reference = fit(cfg)  # 2 epochs x 6 steps
        saved = reference / "checkpoints"
        for start in starts:
            assert load(saved / start)["global_step"] in (4, 6, 8)
            resumed = fit(cfg, saved / start)
            assert resumed != reference
            assert_same_training_state(saved / "last.ckpt", resumed / "checkpoints" / "last.ckpt")
    step4 = load(saved / "step4.ckpt")
    progress = step4["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert progress["ready"] == progress["completed"] == 4  # written between steps
    assert step4["PretrainDataModule"] == {"epoch": 0, "consumed": 8, "videos": 12,
                                           "world_size": 1}  # fmt: skip


# ------------------------------------------------------------------------- data position
@pytest.mark.parametrize("size,world,consumed", [(13, 1, 4), (13, 2, 4), (12, 3, 6), (20, 2, 0)])
def test_sampler_resume_continues_the_global_order(size: int, world: int, consumed: int) -> None:
    """Whatever the number of ranks, the resumed shards are the rest of the same epoch."""
    whole = [EpochSampler(size, seed=3, num_replicas=world, rank=r) for r in range(world)]
    for s in whole:
        s.set_epoch(2)
    full = [list(s) for s in whole]  # rank r: full[r]
    rest = []
    for r in range(world):
        s = EpochSampler(size, seed=3, num_replicas=world, rank=r)
        s.resume(2, consumed)
        assert len(s) == len(full[r])  # Lightning counts the epoch's batches from len()
        rest.append(list(s))
        assert rest[r] == full[r][consumed // world :]
        s.set_epoch(3)  # the next epoch is whole again
        assert len(list(s)) == len(full[r])


def test_sampler_resume_with_another_world_size_skips_the_same_videos() -> None:
    one = EpochSampler(12, seed=1)
    one.set_epoch(1)
    order = [i for _, i in one]
    shards = []
    for r in range(3):
        s = EpochSampler(12, seed=1, num_replicas=3, rank=r)
        s.resume(1, 4)  # 4 keys consumed, e.g. by 2 ranks x 2
        shards += [i for _, i in s]
    assert sorted(shards) == sorted(order[4:4 + 6])  # equal shares of what is left


def test_loader_resumes_mid_epoch_whatever_the_workers(tiny_data: Path) -> None:
    """Through the real datamodule: the position saved after 2 batches of epoch 1 makes a
    new loader (0 or 2 workers; 1 or 2 ranks) yield exactly the remaining batches."""
    from ssvrl.data.bad_videos import BadVideoLog
    from ssvrl.data.datamodule import PretrainDataModule
    from ssvrl.data.dataset import DecodeConfig, PretrainDataset
    from ssvrl.data.index import build_index
    from ssvrl.data.sampling import IntervalPairSampler, TemporalView

    index = build_index("ucf101", tiny_data / "videos", "train",
                        annotations=tiny_data / "annotations")  # fmt: skip
    views = (TemporalView("clip1", 4, 2), TemporalView("clip2", 4, 2))
    bad = BadVideoLog(tiny_data / "bad", len(index), 0.5)
    dataset = PretrainDataset(index, IntervalPairSampler(views), DecodeConfig(short_side=40),
                              bad, seed=11)  # fmt: skip

    def batches(world: int, rank: int, workers: int, state: dict | None) -> list[list[int]]:
        dm = PretrainDataModule(dataset, batch_size=2, num_workers=workers, seed=3)
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)  # type: ignore[assignment]
        if state is not None:
            dm.load_state_dict(state)
        loader = dm.train_dataloader()
        if state is None:
            loader.sampler.set_epoch(1)  # type: ignore[union-attr]
        return [[*b["index"].tolist(), *b["seeds"]["clip1"].tolist()] for b in loader]

    full = batches(1, 0, 0, None)
    assert len(full) == 6
    state = {"epoch": 1, "consumed": 4, "videos": 12, "world_size": 1}  # 2 batches done
    assert batches(1, 0, 2, state) == full[2:]
    two = [batches(2, r, w, state) for r, w in ((0, 0), (1, 2))]
    assert sorted(x for shard in two for b in shard for x in b[:2]) == sorted(
        x for b in full[2:] for x in b[:2]
    )


def test_position_counts_a_finished_epoch_as_the_next_one() -> None:
    from ssvrl.data.datamodule import resume_position

    between = {"ready": 4, "started": 4, "processed": 4, "completed": 4}
    fetched = {"ready": 5, "started": 4, "processed": 4, "completed": 4}  # on_train_batch_start
    batch_end = {"ready": 5, "started": 5, "processed": 5, "completed": 4}  # on_train_batch_end
    assert resume_position(2, between, 6) == (2, 4)
    assert resume_position(2, fetched, 6) == (2, 4)
    assert resume_position(2, batch_end, 6) == (2, 5)
    assert resume_position(2, {k: 6 for k in between}, 6) == (3, 0)


# ------------------------------------------------------------------------------ RNG states
def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    from ssvrl.engine.rng_state import capture, restore

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.save({"rng": capture()}, tmp_path / "rng.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(7), random.random()  # move every generator on
    restore(torch.load(tmp_path / "rng.ckpt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]
