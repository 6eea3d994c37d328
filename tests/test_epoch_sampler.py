"""EpochSampler: (epoch, index) keys, per-epoch shuffles, disjoint rank shards."""

from __future__ import annotations

from ssvrl.data.epoch_sampler import EpochSampler


def test_epochs_differ_and_repeat() -> None:
    s = EpochSampler(50, seed=3)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(0)
    assert list(s) == e0
    assert [i for _, i in e0] != [i for _, i in e1]
    assert {k[0] for k in e1} == {1}
    assert sorted(i for _, i in e0) == list(range(50))


def test_ranks_partition_the_epoch() -> None:
    shards = [list(EpochSampler(51, seed=0, num_replicas=2, rank=r)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 25
    idx = [i for s in shards for _, i in s]
    assert len(set(idx)) == 50  # disjoint, one video dropped to keep ranks equal


def test_no_drop_last_pads() -> None:
    shards = [
        list(EpochSampler(5, shuffle=False, num_replicas=2, rank=r, drop_last=False))
        for r in range(2)
    ]
    assert [i for _, i in shards[0]] == [0, 2, 4] and [i for _, i in shards[1]] == [1, 3, 0]
