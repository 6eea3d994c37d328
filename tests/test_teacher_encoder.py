"""Probing and extracting the EMA teacher's encoder: ``CKPT:teacher`` checkpoint specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import ssvrl.engine.evaluate as evaluate
from ssvrl.augment import AugmentConfig
from ssvrl.backbones import build_backbone, load_weights
from ssvrl.backbones.base import NoTeacherError
from ssvrl.cli import main
from ssvrl.config.schema import OptimConfig
from ssvrl.engine.module import PretrainModule
from ssvrl.eval.checkpoints import checkpoint_label, probe_dir, split_encoder
from ssvrl.objectives import Objective, ViewConfig
from ssvrl.objectives.cvrl import CVRL, CVRLConfig
from ssvrl.objectives.moco import MoCo, MoCoConfig
from ssvrl.objectives.momentum import MomentumCopy
from ssvrl.objectives.svt import SVT, SVTConfig

CONFIG = str(Path(__file__).resolve().parents[1] / "experiments" / "cvrl" / "quickstart.yaml")


def _objective(name: str, dim: int) -> Objective:
    if name == "svt":
        views = (ViewConfig("global", frames=4, count=2, augment=AugmentConfig(crop_size=32)),)
        return SVT(SVTConfig(views=views, out_dim=16, proj_hidden=16, bottleneck_dim=8), dim)
    if name == "moco":
        return MoCo(MoCoConfig(frames=4, queue_size=8, proj_hidden=16, proj_dim=8), dim)
    return CVRL(CVRLConfig(frames=4, proj_hidden=16, proj_dim=8), dim)


def _copy(obj: Objective) -> MomentumCopy | None:
    """SVT's teacher encoder, MoCo's key encoder; None for CVRL."""
    copy = getattr(obj, "teacher_encoder", None) or getattr(obj, "key_encoder", None)
    return copy if isinstance(copy, MomentumCopy) else None


def _training_checkpoint(path: Path, name: str) -> tuple[nn.Module, nn.Module | None]:
    """A Lightning-style checkpoint of a small3d (width 8) trained by ``name``: the module's
    ``state_dict`` (what Lightning saves), the teacher made and moved away from the student.
    Returns (student, teacher)."""
    torch.manual_seed(0)
    encoder = build_backbone("small3d", width=8)
    obj = _objective(name, encoder.num_features)
    module = PretrainModule(encoder, obj, OptimConfig(), global_batch_size=4)
    copy, teacher = _copy(obj), None
    if copy is not None:
        teacher = copy.get(encoder)  # made as at the first training step
        teacher(torch.randn(4, 3, 4, 32, 32))  # its own BN statistics move
        with torch.no_grad():  # the student trains on
            for p in encoder.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 2, "global_step": 7, "state_dict": module.state_dict()}, path)
    return encoder, teacher


def _assert_same(model: nn.Module, expected: nn.Module) -> None:
    got, want = model.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize("name", ["svt", "moco"])
def test_load_weights_takes_exactly_the_teacher(tmp_path: Path, name: str) -> None:
    path = tmp_path / "last.ckpt"
    student, teacher = _training_checkpoint(path, name)
    assert teacher is not None
    fresh = build_backbone("small3d", width=8)
    load_weights(fresh, path, "teacher")
    _assert_same(fresh, teacher)
    t_state = teacher.state_dict()
    differs = [k for k, v in student.state_dict().items() if not torch.equal(v, t_state[k])]
    assert any("running_mean" in k for k in differs) and any("weight" in k for k in differs)
    load_weights(fresh, path)  # default: the student, as before
    _assert_same(fresh, student)


def test_no_teacher_is_an_error_naming_the_file(tmp_path: Path) -> None:
    cvrl = tmp_path / "cvrl.ckpt"
    student, _ = _training_checkpoint(cvrl, "cvrl")
    with pytest.raises(NoTeacherError, match=f"{cvrl}: holds no EMA teacher encoder"):
        load_weights(build_backbone("small3d", width=8), cvrl, "teacher")
    exported = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(exported))
    with pytest.raises(NoTeacherError, match="encoder.safetensors"):
        load_weights(build_backbone("small3d", width=8), exported, "teacher")
    with pytest.raises(ValueError, match="encoder must be one of"):
        load_weights(build_backbone("small3d", width=8), exported, "ema")


def test_spec_suffix_label_and_folder() -> None:
    assert split_encoder("last:teacher") == ("last", "teacher")
    assert split_encoder("runs/a:b/last.ckpt") == ("runs/a:b/last.ckpt", "student")
    assert split_encoder("x.ckpt:student") == ("x.ckpt", "student")
    assert split_encoder(":teacher") == (":teacher", "student")
    last = Path("r/version_1/checkpoints/last.ckpt")
    assert checkpoint_label(last, "teacher") == "version_1/last:teacher"
    assert probe_dir(last, Path("rand")) == Path("r/version_1")
    assert probe_dir(last, Path("rand"), "teacher") == Path("r/version_1/probe_last_teacher")
    assert probe_dir(Path("w/e.ckpt"), Path("rand"), "teacher") == Path("w/probe_e_teacher")


def _args(data: Path, out: Path) -> list[str]:
    return [f"data.root={data / 'videos'}", f"data.annotations={data / 'annotations'}",
            f"out_dir={out}", "name=tiny", "data.num_workers=0", "backbone.width=8",
            "objective.proj_hidden=32", "probe.train_clips=1", "probe.test_clips=1",
            "probe.test_crops=1", "probe.epochs=5", "probe.evaluators=[linear,knn]"]


def test_probe_command_probes_the_teacher(
    tiny_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = tmp_path / "runs" / "tiny" / "version_0"
    ckpt = run / "checkpoints" / "last.ckpt"
    student, teacher = _training_checkpoint(ckpt, "svt")
    assert teacher is not None
    probed: list[dict[str, torch.Tensor]] = []
    real = evaluate.extract_sharded

    def spy(backbone: nn.Module, *args: object, **kwargs: object) -> object:
        probed.append({k: v.clone() for k, v in backbone.state_dict().items()})
        return real(backbone, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluate, "extract_sharded", spy)
    code = main(["probe", CONFIG, *_args(tiny_videos, tmp_path / "runs"),
                 "--checkpoints", str(ckpt), f"{ckpt}:teacher"])
    assert code == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert [r.split(" | ")[:2] for r in rows[1:]] == [
        ["| version_0/last", "2"], ["| version_0/last:teacher", "2"]]
    assert len(probed) == 4  # train and test features, student then teacher
    for state, expected in zip(probed, [student, student, teacher, teacher], strict=True):
        want = expected.state_dict()
        assert all(torch.equal(state[k], v) for k, v in want.items())
    res = json.loads((run / "probe.json").read_text())
    assert res["encoder"] == "student" and res["checkpoint"] == str(ckpt)
    res = json.loads((run / "probe_last_teacher" / "probe.json").read_text())
    assert res["encoder"] == "teacher" and res["epoch"] == 2
    assert set(res["metrics"]) == {"linear", "knn"}


def test_probe_command_refuses_a_checkpoint_without_teacher(
    tiny_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cvrl = tmp_path / "cvrl" / "epoch001.ckpt"
    _training_checkpoint(cvrl, "cvrl")
    svt = tmp_path / "svt" / "last.ckpt"
    _training_checkpoint(svt, "svt")
    args = _args(tiny_videos, tmp_path / "runs")
    # the bad spec comes second: refused before the first probe runs
    code = main(["probe", CONFIG, *args, "--checkpoints", str(svt), f"{cvrl}:teacher"])
    err = capsys.readouterr().err
    assert code == 2 and f"{cvrl}: holds no EMA teacher encoder" in err
    assert not (tmp_path / "svt" / "probe_last" / "probe.json").exists()
    assert main(["probe", CONFIG, *args, "probe.checkpoint=random:teacher"]) == 2
    assert "a random init has no teacher" in capsys.readouterr().err
    code = main(["finetune", CONFIG, *args, f"finetune.checkpoint={svt}:teacher"])
    assert code == 2 and "read by `ssvrl probe` and `ssvrl extract` only" in capsys.readouterr().err


def test_extract_command_reads_the_teacher(tiny_videos: Path, tmp_path: Path) -> None:
    import shutil

    import numpy as np

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    student, teacher = _training_checkpoint(ckpt, "svt")
    assert teacher is not None
    exported = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(exported))
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sorted((tiny_videos / "videos").rglob("*.avi"))[0], videos / "clip.avi")
    base = ["extract", CONFIG, "backbone.width=8", "data.num_workers=0"]
    feats = {}
    for name, spec in [("teacher", f"{ckpt}:teacher"), ("file", str(exported)),
                       ("student", str(ckpt))]:
        out = tmp_path / name
        args = [f"extract.checkpoint={spec}", "--out", str(out), "--videos", str(videos)]
        assert main([*base, *args]) == 0
        feats[name] = np.load(out / "clip.npy")
        protocol = json.loads((out / "extract.json").read_text())["protocol"]
        assert protocol["checkpoint"] == spec
    np.testing.assert_array_equal(feats["teacher"], feats["file"])
    assert not np.allclose(feats["teacher"], feats["student"])
    cvrl = tmp_path / "cvrl.ckpt"
    _training_checkpoint(cvrl, "cvrl")
    spec = f"extract.checkpoint={cvrl}:teacher"
    assert main([*base, spec, "--out", str(tmp_path / "none"), "--videos", str(videos)]) == 2


def test_plot_draws_student_and_teacher_of_one_epoch(tmp_path: Path) -> None:
    from PIL import Image

    from ssvrl.eval.report import plot_over_epochs

    def row(epoch: int, top1: float, encoder: str) -> dict[str, object]:
        return {"epoch": epoch, "encoder": encoder, "metrics": {"linear": {"top1": top1}}}

    rows = [(f"e{e}{s}", row(e, 40.0 + e + (5 if s == "teacher" else 0), s))
            for e in (1, 3) for s in ("student", "teacher")]  # equal epochs: no dict compare
    png = plot_over_epochs(rows, tmp_path / "curve.png")
    assert Image.open(png).size[0] > 100
