"""Two-process gloo DDP (``torchrun -m ssvrl fit``) to the end on a dataset with 5 % broken files,
and a NaN loss on ONE rank in the same run (issue #8).

One launch (launches dominate the time on a 2-core CI machine) checks:

- broken files: 2 of 40 training videos (one truncated, one garbage bytes) are each logged
  exactly once over both ranks, their DataLoader workers and both epochs; ``bad_videos.json``
  lists and counts them; the run exits 0 with every epoch and step done;
- the non-finite guard across ranks: rank 1 alone gets a NaN loss (a constant NaN term, so the
  gradients stay finite and DDP's gradient averaging cannot spread it: only the all-reduced
  flag can) at one step; both ranks skip it: the encoder weights that each rank sees before
  every step are identical across ranks, unchanged over the skipped step, changed after the
  next one; the skip is logged once.

Each launch is a subprocess with a hard timeout (tests/test_torchrun.py's runner).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from tests.test_torchrun import _torchrun

NAN_CALL = 3  # the forward (0-based, per rank) whose loss is NaN on rank 1
TRAIN, EPOCHS, BATCH = 40, 2, 2
STEPS_PER_EPOCH = TRAIN // 2 // BATCH  # 2 ranks, drop_last

PLUGIN = f"""
import hashlib, os
from dataclasses import dataclass
import torch
from ssvrl.objectives import OBJECTIVES
from ssvrl.objectives.cvrl import CVRL, CVRLConfig

@dataclass(frozen=True)
class NaNRank1Config(CVRLConfig):
    name: str = "nan_rank1"

@OBJECTIVES.register("nan_rank1")
class NaNRank1(CVRL):
    '''CVRL that records a hash of the encoder's weights before each forward, and whose loss
    is NaN on rank 1 at forward {NAN_CALL} (gradients stay finite: no gradient path).'''
    Config = NaNRank1Config
    calls = 0

    def forward(self, encoder, views, video_ids=None):
        rank = os.environ["RANK"]
        digest = hashlib.sha1()
        for p in encoder.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        with open(os.path.join(os.environ["TRACE_DIR"], f"rank{{rank}}.txt"), "a") as f:
            f.write(f"{{self.calls}} {{digest.hexdigest()}}\\n")
        out = super().forward(encoder, views, video_ids)
        if rank == "1" and self.calls == {NAN_CALL}:
            out.loss = out.loss + torch.tensor(float("nan"))
        self.calls += 1
        return out
"""


@pytest.fixture(scope="module")
def broken_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """40 training videos (split 1), 2 of them (5 %) broken."""
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth_broken")
    spec = SynthSpec(num_classes=2, groups=14, clips_per_group=2, frames=24, seed=5)
    summary = write_synthetic_dataset(out, spec, workers=1)
    assert summary.train[1] == TRAIN
    lines = (out / "annotations" / "trainlist01.txt").read_text().splitlines()
    rels = [line.split()[0] for line in lines if line]
    truncated, garbage = out / "videos" / rels[5], out / "videos" / rels[-7]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 5])  # cut mid-stream
    garbage.write_bytes(bytes(range(256)) * 40)  # not a video at all
    return out, [truncated, garbage]


def test_ddp_run_with_broken_files_and_a_nan_on_one_rank(
    broken_data: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, bad = broken_data
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "nan_rank1.py").write_text(PLUGIN)
    trace = tmp_path / "trace"
    trace.mkdir()
    monkeypatch.setenv("TRACE_DIR", str(trace))
    extra = (
        "plugins=[nan_rank1]", "objective.name=nan_rank1", f"trainer.max_epochs={EPOCHS}",
        "trainer.max_steps=-1", "data.num_workers=1", f"data.batch_size={BATCH}",
    )  # fmt: skip
    proc = _torchrun(data, tmp_path / "out", *extra, path=tmp_path / "plugin")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]

    # Every epoch and step done.
    run = tmp_path / "out" / "ddp" / "version_0"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == EPOCHS - 1 and ckpt["global_step"] == EPOCHS * STEPS_PER_EPOCH

    # Each broken file: logged exactly once over ranks, workers and epochs; counted in the json.
    for path in bad:
        hits = [line for line in log.splitlines() if "skipping unreadable video" in line]
        assert sum(str(path) in line for line in hits) == 1, "\n".join(hits)
    summary = json.loads((run / "bad_videos.json").read_text())
    assert summary["count"] == 2 and summary["total"] == TRAIN
    assert sorted(v["path"] for v in summary["videos"]) == sorted(map(str, bad))
    assert all(v["reason"] for v in summary["videos"])
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    per_epoch = [float(r["data/bad_videos"]) for r in rows if r.get("data/bad_videos")]
    assert len(per_epoch) == EPOCHS and per_epoch[-1] == 2.0
    assert "self.log('data/bad_videos', ..., sync_dist=True)" not in log
    spread = [float(r["train/embed_std"]) for r in rows if r.get("train/embed_std")]
    assert len(spread) == EPOCHS * STEPS_PER_EPOCH and min(spread) > 0.05  # logged, healthy

    # The NaN on rank 1: skipped on both ranks, said once, weights identical across ranks.
    traces = [
        [line.split() for line in (trace / f"rank{r}.txt").read_text().splitlines()]
        for r in (0, 1)
    ]
    assert len(traces[0]) == len(traces[1]) == EPOCHS * STEPS_PER_EPOCH
    assert [h for _, h in traces[0]] == [h for _, h in traces[1]], "ranks diverged"
    hashes = [h for _, h in traces[0]]
    assert hashes[NAN_CALL + 1] == hashes[NAN_CALL]  # the NaN step changed nothing ...
    assert hashes[NAN_CALL + 2] != hashes[NAN_CALL + 1]  # ... and the next one trained
    assert hashes[NAN_CALL] != hashes[NAN_CALL - 1]
    assert len(re.findall(rf"step {NAN_CALL}: non-finite loss", log)) == 1, log[-5000:]
