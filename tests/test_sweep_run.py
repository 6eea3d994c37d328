"""Running sweeps: failure isolation, SIGTERM and SIGKILL, resume after a kill, the lock
against a second sweep process, and two real tiny pretrain + probe runs, one of them resumed.
Most runs use a stub run function in this process (milliseconds)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ssvrl.cli import main
from ssvrl.sweep.execute import RunContext, execute_run
from ssvrl.sweep.plan import make_plan, prepare_folders
from ssvrl.sweep.report import write_report
from ssvrl.sweep.runner import _Finished, inline_launcher, run_sweep, slot_envs
from ssvrl.sweep.status import read_status, write_status
from ssvrl.sweep.work import latest_checkpoint
from tests.sweep_utils import dead_pid, stub, temperature_sweep, write_sweep

# --- running ---------------------------------------------------------------------------------


def test_a_failed_run_does_not_stop_the_others(tmp_path: Path) -> None:
    plan = make_plan(temperature_sweep(tmp_path))
    prepare_folders(plan)
    lines: list[str] = []
    code = run_sweep(plan, launcher=inline_launcher(plan, stub), echo=lines.append, poll_s=0)
    assert code == 1
    for run in plan.runs:
        status = read_status(plan.folder(run))
        if run.values["objective.temperature"] == 0.5:
            assert status["state"] == "failed" and "boom" in status["error"]
            assert "RuntimeError: boom" in (plan.folder(run) / "error.txt").read_text()
        else:
            assert status["state"] == "done" and status["pid"] == os.getpid()
            assert status["host"] == socket.gethostname() and status["end"] >= status["start"]
            results = json.loads((plan.folder(run) / "results.json").read_text())
            assert results["metrics"] == {"acc": 10.0 + run.seed}
    assert any(line.startswith("FAILED") for line in lines)
    assert any("2/4 done, 2 failed, 0 remaining" in line for line in lines)


def test_a_child_killed_without_a_word_is_marked_failed(tmp_path: Path) -> None:
    plan = make_plan(write_sweep(tmp_path, grid={"objective.temperature": [0.1]}))
    prepare_folders(plan)

    def killed(run: Any, folder: Path, env: dict[str, str]) -> _Finished:
        (folder / "log.txt").write_text("epoch 3 ...\n")
        write_status(folder, state="running", pid=12345)
        return _Finished(-9)

    assert run_sweep(plan, launcher=killed, echo=lambda _: None, poll_s=0) == 1
    folder = plan.folder(plan.runs[0])
    assert read_status(folder)["state"] == "failed"
    assert "SIGKILL" in (folder / "error.txt").read_text()
    assert "epoch 3" in (folder / "error.txt").read_text()


def test_sigterm_marks_the_run_interrupted(tmp_path: Path) -> None:
    plan = make_plan(write_sweep(tmp_path, grid={"objective.temperature": [0.1]}))

    def stopped(ctx: RunContext) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler stopping the job
        raise AssertionError("not reached: the handler raises first")

    before = signal.getsignal(signal.SIGTERM)
    assert execute_run(plan, 0, stopped) == 130
    status = read_status(plan.folder(plan.runs[0]))
    assert status["state"] == "interrupted" and status["error"] == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before  # restored


def test_rerun_skips_done_and_redoes_runs_whose_process_died(tmp_path: Path) -> None:
    plan = make_plan(temperature_sweep(tmp_path))
    prepare_folders(plan)
    done, dead, alive, fresh = (plan.folder(r) for r in plan.runs)
    write_status(done, state="done", seconds=30.0)
    here = {"host": socket.gethostname()}
    write_status(dead, state="running", pid=dead_pid(), pretrained=True, **here)
    write_status(alive, state="running", pid=os.getpid(), **here)  # another live process
    seen: dict[str, dict[str, Any]] = {}

    def record(ctx: RunContext) -> dict[str, Any]:
        seen[ctx.folder.name] = ctx.previous
        return {"metrics": {"acc": 1.0}}

    lines: list[str] = []
    code = run_sweep(plan, launcher=inline_launcher(plan, record), echo=lines.append, poll_s=0)
    assert code == 0
    assert set(seen) == {dead.name, fresh.name}  # the done and the live run are not started
    assert seen[dead.name]["pretrained"] is True  # what the run resumes from
    assert "2 to run (1 interrupted, resumed)" in lines[0]
    assert "~60s left" in lines[0]  # the done run's 30 s times two remaining, one at a time
    assert any("running in another process" in line for line in lines)


def test_a_second_sweep_process_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    path = write_sweep(tmp_path, grid={"objective.temperature": [0.1]})
    other = subprocess.Popen(["sleep", "30"])
    try:
        lock = tmp_path / "out" / "sweep" / "sweep.lock"
        lock.parent.mkdir(parents=True)
        lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        assert main(["sweep", str(path)]) == 2
        assert f"pid {other.pid}" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()


def test_latest_checkpoint_is_the_newest_version_with_one(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    for version, has in ((0, True), (1, True), (2, False), (10, True)):
        folder = tmp_path / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        if has:
            (folder / "last.ckpt").write_bytes(b"x")
    assert latest_checkpoint(tmp_path) == tmp_path / "version_10" / "checkpoints" / "last.ckpt"


def test_slot_environments() -> None:
    assert slot_envs(1, ["0", "1"]) == [{}]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in slot_envs(3, ["2", "5"])] == ["2", "5", "2"]
    assert slot_envs(2, [], cpus=4) == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}] * 2

# --- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(
        out, SynthSpec(num_classes=6, groups=4, clips_per_group=2, frames=32, seed=1), workers=1
    )
    return out


def test_two_real_runs_then_resume_one(tiny_data: Path, tmp_path: Path) -> None:
    overrides = {
        "data.root": str(tiny_data / "videos"), "data.annotations": str(tiny_data / "annotations"),
        "trainer.max_epochs": 1, "trainer.progress_bar": False, "data.batch_size": 8,
        "data.num_workers": 0, "backbone.width": 8, "objective.proj_hidden": 32,
        "objective.frames": 4, "probe.epochs": 10, "probe.test_clips": 1,
        "probe.train_clips": 1, "probe.batch_size": 8, "data.max_bad_fraction": 0.5,
    }
    path = write_sweep(tmp_path, grid={"objective.temperature": [0.1, 0.5]}, overrides=overrides,
                  evaluate=["linear", "knn"])
    plan = make_plan(path)
    prepare_folders(plan)
    assert run_sweep(plan, launcher=inline_launcher(plan), echo=lambda _: None, poll_s=0) == 0
    write_report(plan.sweep_dir, plots=False)
    with (plan.sweep_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(0 <= float(r["linear/top1 mean"]) <= 100 for r in rows)
    assert all(r["knn/top1 mean"] and r["pretrain/loss mean"] for r in rows)
    first = plan.folder(plan.runs[0])
    assert (first / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert (first / "probe" / "probe.json").is_file() and (first / "config.yaml").is_file()
    # Killed during pretraining: its pid is gone and pretraining was not recorded as finished.
    write_status(first, state="running", pid=dead_pid(), host=socket.gethostname(),
                 pretrained=False)
    assert run_sweep(plan, launcher=inline_launcher(plan), echo=lambda _: None, poll_s=0) == 0
    status = read_status(first)
    assert status["state"] == "done" and status["attempts"] == 2
    assert status["resumed_from"] == str(first / "version_0" / "checkpoints" / "last.ckpt")
    assert (first / "version_1").is_dir()  # the resumed fit's own folder
