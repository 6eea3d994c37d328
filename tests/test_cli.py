"""The CLI end to end on a tiny synthetic dataset: fit, probe, config errors, corrupt videos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ssvrl.cli import main
from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "cvrl" / "quickstart.yaml")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(
        out, SynthSpec(num_classes=6, groups=4, clips_per_group=2, frames=40, seed=1), workers=2
    )
    return out


def _overrides(data: Path, out: Path) -> list[str]:
    return [
        f"data.root={data / 'videos'}",
        f"data.annotations={data / 'annotations'}",
        f"out_dir={out}",
        "name=smoke",
        "trainer.max_epochs=2",
        "data.batch_size=8",
        "data.num_workers=0",
        "backbone.width=8",
        "objective.proj_hidden=32",
        "trainer.progress_bar=false",
        "probe.epochs=20",
        "probe.test_clips=2",
        "probe.train_clips=1",
        "data.max_bad_fraction=0.5",
    ]


def _corrupt(videos: Path) -> list[Path]:
    """Break three training videos in the ways real datasets break."""
    files = sorted(videos.rglob("*.avi"))
    bad = [files[0], files[3], files[6]]
    bad[0].write_bytes(b"")  # empty
    bad[1].write_bytes(os.urandom(4096))  # not a video
    data = bad[2].read_bytes()
    bad[2].write_bytes(data[: len(data) // 3])  # truncated
    return bad


def test_fit_and_probe_with_corrupt_videos(tiny_data: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    _corrupt(data / "videos")
    args = _overrides(data, tmp_path / "runs")
    assert main(["fit", CONFIG, *args]) == 0
    run = tmp_path / "runs" / "smoke" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "cvrl" in (run / "config.yaml").read_text()
    metrics = (run / "metrics.csv").read_text()
    assert "train/loss" in metrics
    summary = json.loads((run / "bad_videos.json").read_text())
    # Only the corrupt files that were part of the training split can be met during training.
    assert 1 <= summary["count"] <= 3
    assert all(v["reason"] for v in summary["videos"])
    assert (
        main(["probe", CONFIG, *args, f"probe.checkpoint={run / 'checkpoints' / 'last.ckpt'}"]) == 0
    )
    result = json.loads((run / "probe.json").read_text())
    assert 0 <= result["top1"] <= 100 and result["top5"] >= result["top1"]
    assert result["num_test_videos"] + result["unreadable_videos"] >= 1
    assert main(["probe", CONFIG, *args, "probe.checkpoint=random"]) == 0
    assert (tmp_path / "runs" / "smoke" / "probe_random" / "probe.json").is_file()


def test_config_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", CONFIG, "optim.lrr=0.1"]) == 2
    assert "Did you mean 'optim.lr'" in capsys.readouterr().err
    assert main(["fit", CONFIG, "objective.augment.scal=[0.2,1]"]) == 2
    assert "objective.augment.scale" in capsys.readouterr().err
    assert main(["fit", CONFIG, "objective.name=cvlr"]) == 2
    assert "Did you mean 'cvrl'" in capsys.readouterr().err
    assert main(["fit", CONFIG, "optim.lr=fast"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main(["fit", "no/such/file.yaml"]) == 2


def test_too_many_bad_videos_stops_with_clear_error(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for f in list((data / "videos").rglob("*.avi"))[::2]:
        f.write_bytes(b"broken")
    code = main(
        ["fit", CONFIG, *_overrides(data, tmp_path / "runs")[:-1], "data.max_bad_fraction=0.1"]
    )
    assert code == 1
    assert "unreadable" in caplog.text and "max_bad_fraction" in caplog.text


def test_data_synth_command(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--classes", "2", "--groups", "3",
                 "--clips-per-group", "1", "--frames", "24", "--background-mix", "0.5",
                 "--dots", "30", "30", "--dot-speed", "0.9", "0.9",
                 "--dot-angular-speed", "3", "3"]) == 0  # fmt: skip
    assert len(list((out / "videos").rglob("*.avi"))) == 6
    spec = json.loads((out / "synthetic_spec.json").read_text())
    assert spec["background_mix"] == 0.5 and spec["dots"] == [30, 30]
    assert spec["dot_speed"] == [0.9, 0.9] and spec["dot_angular_speed"] == [3.0, 3.0]
    assert (out / "annotations" / "classInd.txt").read_bytes().endswith(b"\r\n")


def test_quickstart_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The main job on a tiny dataset: both probes run and the table and summary appear."""
    from ssvrl.quickstart import run_quickstart

    spec = SynthSpec(groups=3, clips_per_group=2, frames=32, seed=2)
    summary = run_quickstart(tmp_path, ["trainer.max_epochs=1", "data.batch_size=8",
                                        "data.num_workers=0", "probe.epochs=10",
                                        "trainer.progress_bar=false"], spec)
    out = capsys.readouterr().out
    assert "| random init |" in out and "| CVRL pretrained |" in out
    assert summary["gain_top1"] == summary["pretrained"]["top1"] - summary["random_init"]["top1"]
    assert (Path(summary["run_dir"]) / "quickstart.json").is_file()


def test_quickstart_with_another_recipe_probes_the_teacher_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config`` swaps the recipe: the SVT quickstart probes student and EMA teacher."""
    from ssvrl.cli import build_parser
    from ssvrl.quickstart import run_quickstart

    svt = Path(__file__).resolve().parents[1] / "experiments" / "svt" / "quickstart.yaml"
    args = build_parser().parse_args(["quickstart", "--config", str(svt), "seed=1"])
    assert args.config == str(svt) and args.overrides == ["seed=1"]
    spec = SynthSpec(groups=3, clips_per_group=2, frames=32, seed=2)
    summary = run_quickstart(tmp_path, ["trainer.max_epochs=1", "data.batch_size=8",
                                        "data.num_workers=0", "probe.epochs=10",
                                        "trainer.progress_bar=false"], spec, config=svt)
    out = capsys.readouterr().out
    assert "| SVT pretrained |" in out and "| SVT EMA teacher |" in out
    assert summary["objective"] == "svt" and summary["teacher"]["encoder"] == "teacher"
    assert summary["teacher_gain_top1"] == (
        summary["teacher"]["top1"] - summary["random_init"]["top1"]
    )


def test_views_picture(tiny_data: Path, tmp_path: Path) -> None:
    """`ssvrl views` writes a PNG grid: one row per video, one column per view."""
    from PIL import Image

    out = tmp_path / "views.png"
    args = [f"data.root={tiny_data / 'videos'}", f"data.annotations={tiny_data / 'annotations'}"]
    assert main(["views", CONFIG, *args, "--out", str(out), "--videos", "3", "--frames", "2"]) == 0
    img = Image.open(out)
    img.verify()
    crop, pad, label = 56, 4, 14  # quickstart crop size; layout constants of ssvrl.engine.views
    assert Image.open(out).size == (2 * 2 * crop + 3 * pad, 3 * (crop + label) + 4 * pad)


def test_fit_with_repeated_augmentation_and_its_config_checks(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    args = [*_overrides(tiny_data, tmp_path / "runs"), "trainer.max_epochs=1", "data.repeats=2"]
    assert main(["fit", CONFIG, *args]) == 0  # 4 videos x 2 samples per batch
    metrics = (tmp_path / "runs" / "smoke" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics
    assert main(["fit", CONFIG, *args, "data.repeats=3"]) == 2  # 8 is not a multiple of 3
    assert "multiple of data.repeats=3" in capsys.readouterr().err
    from ssvrl.objectives.cvrl import CVRL

    monkeypatch.setattr(CVRL, "supports_repeats", False)
    assert main(["fit", CONFIG, *args]) == 2
    assert "does not support several samples" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "smoke" / "version_1").exists()  # refused before any run
