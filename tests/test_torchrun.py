"""``torchrun --nproc_per_node=2 -m ssvrl fit`` on CPU (gloo DDP): the launch path of a real
multi-GPU job, minus the GPUs.

Checks that two ranks train a few steps and finish, that they share ONE run folder (rank 0
names it; a second ``version_*`` means every rank made its own), that a checkpoint is written,
and that a rank that raises ends the whole job with its error instead of leaving the other rank
waiting in a collective forever. Each launch is a subprocess with a hard timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dist_utils import free_port

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # s; two ranks importing torch + Lightning on 2 cores, then 2 steps


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth_ddp")
    spec = SynthSpec(num_classes=2, groups=4, clips_per_group=2, frames=24, seed=5)
    write_synthetic_dataset(out, spec, workers=1)
    return out


def _torchrun(
    data: Path, out: Path, *extra: str, path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --nproc_per_node=2 -m ssvrl fit`` with tiny settings;
    ``path``: a folder put on the ranks' ``PYTHONPATH`` (plugins)."""
    base = ROOT / "experiments" / "_base"
    config = out / "ddp.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"inherit: [{base / 'synthetic.yaml'}, {base / 'cpu.yaml'}]\n")
    args = [
        f"data.root={data / 'videos'}",
        f"data.annotations={data / 'annotations'}",
        f"out_dir={out}",
        "name=ddp",
        "backbone.name=small3d",
        "backbone.width=4",
        "objective.name=cvrl",
        "objective.frames=4",
        "objective.proj_hidden=16",
        "objective.proj_dim=8",
        "objective.augment.crop_size=32",
        "data.batch_size=2",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_epochs=1",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        "trainer.progress_bar=false",
        *extra,
    ]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        f"--master_port={free_port()}", "-m", "ssvrl", "fit", str(config), *args,
    ]  # fmt: skip
    python_path = os.pathsep.join(str(p) for p in (path, ROOT) if p is not None)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}
    try:
        return subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired as err:  # the whole process tree is killed by run()
        tail = (err.stdout or b"")[-3000:], (err.stderr or b"")[-3000:]
        pytest.fail(f"torchrun still running after {TIMEOUT} s (a hung rank?): {tail}")


def test_two_ranks_share_one_run_folder_and_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    proc = _torchrun(tiny_data, tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    runs = sorted(p.name for p in (tmp_path / "ddp").glob("version_*"))
    assert runs == ["version_0"], f"one run folder expected, found {runs}"
    run = tmp_path / "ddp" / "version_0"
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert log.count("run folder: ") == 2, log[-4000:]  # both ranks report the same folder
    assert all(line.endswith("version_0") for line in log.splitlines() if "run folder: " in line)
    assert "batch-norm statistics stay per process" in log  # the CPU/gloo BN policy, said


def test_a_failing_rank_ends_every_rank_with_its_error(tiny_data: Path, tmp_path: Path) -> None:
    # A plugin that raises on rank 1 only, inside the first training step (after DDP setup,
    # where rank 0 would otherwise wait in the gradient all-reduce).
    plugin = tmp_path / "rank_bomb.py"
    plugin.write_text(
        "import os\n"
        "from ssvrl.objectives import OBJECTIVES\n"
        "from ssvrl.objectives.cvrl import CVRL, CVRLConfig\n"
        "from dataclasses import dataclass\n"
        "@dataclass(frozen=True)\n"
        "class BombConfig(CVRLConfig):\n"
        "    name: str = 'rank_bomb'\n"
        "@OBJECTIVES.register('rank_bomb')\n"
        "class Bomb(CVRL):\n"
        "    Config = BombConfig\n"
        "    def forward(self, encoder, views, video_ids=None):\n"
        "        if os.environ.get('RANK') == '1':\n"
        "            raise RuntimeError('deliberate failure on rank 1')\n"
        "        return super().forward(encoder, views, video_ids)\n"
    )
    extra = ("plugins=[rank_bomb]", "objective.name=rank_bomb")
    proc = _torchrun(tiny_data, tmp_path / "out", *extra, path=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "deliberate failure on rank 1" in log


# ------------------------------------------------------------ rank 0 names the run folder
@pytest.mark.parametrize(
    "env,rank",
    [({}, 0), ({"RANK": "1"}, 1), ({"SLURM_PROCID": "3"}, 3),
     ({"NODE_RANK": "1", "LOCAL_RANK": "1"}, 3), ({"LOCAL_RANK": "1"}, 1)],
)  # fmt: skip
def test_launch_rank(env: dict[str, str], rank: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from ssvrl.engine.run_dir import launch_rank

    for key in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launch_rank(devices_per_node=2) == rank


def test_other_ranks_make_no_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ssvrl.cli import load_experiment
    from ssvrl.engine.build import make_run_dir

    cfg = load_experiment(None, [f"out_dir={tmp_path}", "name=r", "trainer.devices=2"])
    monkeypatch.setenv("RANK", "1")
    placeholder = make_run_dir(cfg)
    assert not (tmp_path / "r").exists() and placeholder.is_dir()
    monkeypatch.setenv("RANK", "0")
    assert make_run_dir(cfg) == tmp_path / "r" / "version_0"


# -------------------------------------------------------------------- batch-norm policy
@pytest.mark.parametrize(
    "accelerator,devices,nodes,sync,message",
    [("gpu", 2, 1, True, "SyncBatchNorm"), ("cuda", 1, 2, True, "SyncBatchNorm"),
     ("cpu", 2, 1, False, "batch-norm statistics stay per process"), ("gpu", 1, 1, False, "")],
)  # fmt: skip
def test_batchnorm_policy(accelerator: str, devices: int, nodes: int, sync: bool, message: str,
                          caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from ssvrl.config.schema import TrainerConfig
    from ssvrl.engine.batchnorm import sync_batchnorm

    t = TrainerConfig(accelerator=accelerator, devices=devices, num_nodes=nodes)
    with caplog.at_level("INFO", logger="ssvrl"):
        assert sync_batchnorm(t) is sync
    assert message in caplog.text if message else not caplog.text
