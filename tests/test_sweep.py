"""Sweep files: expansion and run names, strict validation, the results table, dry-run and
slurm output (no run is started here; tests/test_sweep_run.py runs them)."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ssvrl.cli import main
from ssvrl.sweep.expand import expand, short_keys
from ssvrl.sweep.plan import make_plan, prepare_folders
from ssvrl.sweep.report import Record, aggregate, format_markdown
from ssvrl.sweep.runner import inline_launcher, run_sweep
from ssvrl.sweep.slurm import array_spec, write_sbatch
from ssvrl.sweep.spec import SweepError, load_sweep
from ssvrl.sweep.status import write_status
from ssvrl.sweep.work import probe_metrics
from tests.sweep_utils import BASE, ROOT, stub, temperature_sweep, write_sweep

# --- expansion -------------------------------------------------------------------------------


def test_grid_times_zip_times_seeds(tmp_path: Path) -> None:
    path = write_sweep(
        tmp_path,
        grid={"objective.temperature": [0.1, 0.5]},
        zip={"optim.lr": [0.001, 0.002], "data.batch_size": [16, 32]},
        seeds=[0, 1, 2],
    )
    runs = expand(load_sweep(path))
    assert len(runs) == 2 * 2 * 3 and len({r.name for r in runs}) == 12
    assert [r.seed for r in runs[:4]] == [0, 0, 0, 0]  # seeds outermost
    pairs = {(r.values["optim.lr"], r.values["data.batch_size"]) for r in runs}
    assert pairs == {(0.001, 16), (0.002, 32)}  # zipped, not crossed
    assert runs[0].name.startswith("temperature=0.1,lr=0.001,batch_size=16,seed=0-")
    assert all(re.fullmatch(r"[A-Za-z0-9._=,+-]+-[0-9a-f]{6}", r.name) for r in runs)
    assert [r.name for r in expand(load_sweep(path))] == [r.name for r in runs]  # stable


def test_names_survive_a_grown_grid(tmp_path: Path) -> None:
    before = {r.name for r in expand(load_sweep(temperature_sweep(tmp_path)))}
    grown = write_sweep(tmp_path, grid={"objective.temperature": [0.1, 0.5, 0.2]}, seeds=[0, 1, 2])
    after = {r.name for r in expand(load_sweep(grown))}
    assert before < after and len(after) == 9


def test_mapping_values_with_labels(tmp_path: Path) -> None:
    fame = [{"view": "clip1", "kind": "fame", "fame": {"area": 0.5}}]
    path = write_sweep(tmp_path, grid={"objective.view_motion": {"values": [[], fame],
                                                            "labels": ["off", "fame"]}})
    plan = make_plan(path)
    assert [r.labels["objective.view_motion"] for r in plan.runs] == ["off", "fame"]
    assert plan.configs[0].objective.view_motion == ()
    assert plan.configs[1].objective.view_motion[0].view == "clip1"
    assert plan.configs[1].name == plan.runs[1].name
    assert plan.configs[1].out_dir == str(tmp_path / "out" / "sweep")


def test_base_itself_can_be_swept(tmp_path: Path) -> None:
    experiments = ROOT / "experiments"
    path = write_sweep(tmp_path, grid={"base": [str(experiments / "cvrl" / "quickstart.yaml"),
                                           str(experiments / "moco" / "quickstart.yaml")]},
                  overrides={"trainer.max_epochs": 2})
    data = yaml.safe_load(path.read_text())
    del data["base"]
    path.write_text(yaml.safe_dump(data))
    plan = make_plan(path)
    assert [r.labels["base"] for r in plan.runs] == ["cvrl/quickstart", "moco/quickstart"]
    assert [c.objective.name for c in plan.configs] == ["cvrl", "moco"]
    assert {c.trainer.max_epochs for c in plan.configs} == {2}
    assert plan.runs[1].name.startswith("base=moco-quickstart-")
    with pytest.raises(SweepError, match="both given and swept"):
        load_sweep(write_sweep(tmp_path, grid={"base": [str(BASE)]}))


def test_short_keys_only_as_long_as_needed() -> None:
    keys = ["objective.temperature", "probe.knn_temperature", "probe.temperature", "optim.lr"]
    assert short_keys(keys) == {
        "objective.temperature": "objective.temperature",
        "probe.knn_temperature": "knn_temperature",
        "probe.temperature": "probe.temperature",
        "optim.lr": "lr",
    }


# --- validation ------------------------------------------------------------------------------


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, grids={"objective.temperature": [0.1]})
    with pytest.raises(SweepError, match="Did you mean 'grid'"):
        load_sweep(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"zip": {"optim.lr": [0.1, 0.2], "data.batch_size": [8]}}, "unequal lengths"),
        ({"grid": {"seed": [0, 1]}}, "use 'seeds:'"),
        ({"grid": {"optim.lr": [0.1]}, "overrides": {"optim": {"lr": 1}}}, "same value twice"),
        ({"grid": {"optim.lr": {"values": [1], "labels": [True]}}}, "quote them"),
        ({"seeds": [0, 0]}, "without repeats"),
    ],
)
def test_bad_sweep_files(tmp_path: Path, body: dict[str, Any], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        load_sweep(write_sweep(tmp_path, **body))


def test_one_bad_value_fails_the_whole_sweep_naming_run_and_key(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, grid={"objective.temperature": [0.1, "hot"]}, seeds=[0, 1])
    with pytest.raises(SweepError) as info:
        make_plan(path)
    text = str(info.value)
    assert "2 of 4 runs are invalid" in text
    bad = [r.name for r in expand(load_sweep(path)) if r.labels["objective.temperature"] == "hot"]
    assert all(name in text for name in bad)
    assert "objective.temperature (from grid/zip objective.temperature=hot)" in text
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert not (tmp_path / "out").exists()  # nothing started


def test_typo_in_a_swept_key_is_suggested(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, grid={"objective.temprature": [0.1, 0.2]})
    with pytest.raises(SweepError, match="Did you mean 'objective.temperature'"):
        make_plan(path)

# --- results ---------------------------------------------------------------------------------


def test_aggregation_with_known_numbers() -> None:
    key = "objective.temperature"
    records = [
        Record("a0", {key: "0.1"}, 0, "done", {"acc": 70.0, "knn": 1.0}),
        Record("a1", {key: "0.1"}, 1, "done", {"acc": 80.0, "knn": 3.0}),
        Record("a2", {key: "0.1"}, 2, "done", {"acc": 90.0, "knn": 5.0}),
        Record("b0", {key: "0.5"}, 0, "done", {"acc": 50.0}),
        Record("b1", {key: "0.5"}, 1, "failed", {}),
    ]
    rows, metrics = aggregate(records, [key])
    assert metrics == ["acc", "knn"]
    assert rows[0].stats == {"acc": (80.0, 10.0, 3), "knn": (3.0, 2.0, 3)}
    assert rows[0].seeds_done == 3 and rows[0].status == "done"
    assert rows[1].stats["acc"][:1] == (50.0,) and rows[1].stats["acc"][2] == 1
    assert rows[1].status == "1 done, 1 failed" and "knn" not in rows[1].stats
    table = format_markdown(rows, [key], {key: "temperature"}, metrics)
    assert "| 0.1 | 80 ± 10 | 3 ± 2 | 3 | done |" in table
    assert "| 0.5 | 50 ± - |  | 1 | 1 done, 1 failed |" in table


def test_report_rebuilds_from_the_run_folders(tmp_path: Path) -> None:
    path = temperature_sweep(tmp_path, seeds=(0, 1, 2))
    plan = make_plan(path)
    prepare_folders(plan)
    run_sweep(plan, launcher=inline_launcher(plan, stub), echo=lambda _: None, poll_s=0)
    assert not (plan.sweep_dir / "results.csv").exists()  # run_sweep runs; the report is apart
    assert main(["sweep", str(path), "--report"]) == 0
    with (plan.sweep_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["objective.temperature"] for r in rows] == ["0.1", "0.5"]
    assert float(rows[0]["acc mean"]) == pytest.approx(11.0)  # 10 + seeds 0, 1, 2
    assert float(rows[0]["acc std"]) == pytest.approx(1.0)
    assert rows[0]["seeds_done"] == "3" and rows[1]["status"] == "3 failed"
    png = plan.sweep_dir / "plots" / "acc__temperature.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_metrics_are_read_defensively() -> None:
    nested = {"top1": 1.0, "metrics": {"linear": {"top1": 60.0, "top5": 99.0},
                                       "retrieval": {"R@1": 40.0, "note": "x"}, "knn": 55.0}}
    assert probe_metrics(nested) == {"linear/top1": 60.0, "linear/top5": 99.0,
                                     "retrieval/R@1": 40.0, "knn": 55.0}
    assert probe_metrics({"top1": 50.0, "top5": 90.0}) == {"linear/top1": 50.0,
                                                          "linear/top5": 90.0}
    assert probe_metrics({"metrics": "?"}) == {}

# --- command line ----------------------------------------------------------------------------


def test_dry_run_lists_runs_and_states(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = temperature_sweep(tmp_path)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    runs = expand(load_sweep(path))
    assert all(r.name in out for r in runs) and out.count("pending") == 4
    assert "4 runs, all configs valid" in out and not (tmp_path / "out").exists()
    write_status(tmp_path / "out" / "sweep" / runs[1].name, state="done")
    main(["sweep", str(path), "--dry-run"])
    line = next(line for line in capsys.readouterr().out.splitlines() if runs[1].name in line)
    assert line.split()[-1] == "done" and "temperature=0.5" in line


def test_slurm_array_over_the_runs_not_done(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert array_spec([9, 0, 1, 2, 3, 6, 8], 2) == "0-3,6,8-9%2"
    path = write_sweep(tmp_path, grid={"objective.temperature": [0.1, 0.5]}, seeds=[0, 1],
                  slurm={"options": {"partition": "gpu", "gres": "gpu:1"},
                         "setup": ["source .venv/bin/activate"]})
    plan = make_plan(path)
    prepare_folders(plan)
    write_status(plan.folder(plan.runs[2]), state="done")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert main(["sweep", str(path), "--slurm", "--parallel", "2"]) == 0
    script = (plan.sweep_dir / "slurm" / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-1,3%2" in script and "#SBATCH --partition=gpu" in script
    assert "source .venv/bin/activate" in script
    assert "--run-index $SLURM_ARRAY_TASK_ID" in script
    assert "sbatch not found" in capsys.readouterr().out
    assert write_sbatch(plan, [0]).name == "sweep.sbatch"


def test_every_shipped_sweep_is_valid() -> None:
    files = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))
    assert files
    for path in files:
        assert make_plan(path).configs
