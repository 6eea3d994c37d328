"""Linear probe pieces and ``ssvrl probe``: frozen-backbone invariance, multi-clip features,
classifiers and feature norms, top-k, the comparison table, several checkpoints and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssvrl.augment import AugmentConfig, VideoAugment
from ssvrl.backbones import build_backbone
from ssvrl.cli import main
from ssvrl.eval.feature_norm import Standardize
from ssvrl.eval.features import extract_features
from ssvrl.eval.linear_probe import fit_linear_probe, topk_accuracy
from ssvrl.eval.report import format_table

CONFIG = str(Path(__file__).resolve().parents[1] / "experiments" / "cvrl" / "quickstart.yaml")


def _batches(n: int = 3, B: int = 2, K: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"clips": torch.randint(0, 256, (B, K, 3, 4, 36, 36), dtype=torch.uint8, generator=g),
             "label": torch.arange(B), "valid": torch.ones(B, dtype=torch.bool),
             "index": torch.arange(B) + i * B} for i in range(n)]


def test_backbone_weights_and_bn_statistics_untouched() -> None:
    model = build_backbone("small3d", width=8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    aug = VideoAugment(AugmentConfig(crop_size=32))
    fs = extract_features(model, _batches(), aug.eval_transform, torch.device("cpu"))
    assert model.training  # the caller's mode is restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running_mean / running_var / num_batches_tracked too
    assert fs.feats.shape == (6, 2, model.num_features) and fs.labels.tolist() == [0, 1] * 3
    assert fs.index.tolist() == list(range(6))


def test_clip_features_are_per_clip() -> None:
    """Clip k of a video gets the features of that clip alone (averaging happens later)."""
    model = build_backbone("small3d", width=8)
    aug = VideoAugment(AugmentConfig(crop_size=32))
    batch = _batches(1)[0]
    fs = extract_features(model, [batch], aug.eval_transform, torch.device("cpu"))
    with torch.no_grad():
        model.eval()
        alone = model(aug.eval_transform(batch["clips"][1, 0:1]))  # video 1, clip 0
    assert torch.allclose(fs.feats[1, 0], alone[0], atol=1e-5)
    assert not torch.allclose(fs.feats[1, 0], fs.feats[1, 1])


def test_linear_probe_separates_separable_data() -> None:
    g = torch.Generator().manual_seed(0)
    centres = 5 * torch.randn(4, 16, generator=g)
    y = torch.arange(200) % 4
    x = centres[y] + torch.randn(200, 16, generator=g) + 100.0  # offset: standardisation matters
    probe = fit_linear_probe(x, y, 4, steps=50)
    xt = centres[y] + torch.randn(200, 16, generator=g) + 100.0
    assert topk_accuracy(probe(xt), y)["top1"] > 95.0


def test_topk_accuracy_known_answer() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    y = torch.tensor([0, 2, 1, 1])
    acc = topk_accuracy(logits, y, ks=(1, 2, 5))
    assert acc == {"top1": 25.0, "top2": 75.0, "top5": 100.0}


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 5 * torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(n) % 4
    return centres[y] + torch.randn(n, 16, generator=g) + 100.0, y


@pytest.mark.parametrize(
    ("classifier", "norm"),
    [("lbfgs", "l2"), ("lbfgs", "bn"), ("sgd", "standardize"), ("sgd", "bn"), ("lbfgs", "none")],
)
def test_classifiers_and_feature_norms_separate_blobs(classifier: str, norm: str) -> None:
    x, y = _blobs(120, 1)
    head = fit_linear_probe(x, y, 4, steps=8, classifier=classifier, norm=norm, lr=0.5,
                            batch_size=40)
    xt, yt = _blobs(120, 2)
    assert not head.training
    assert topk_accuracy(head(xt), yt)["top1"] > 95.0


def test_standardize_streaming_equals_full_batch() -> None:
    x = torch.tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 13.0], [7.0, 15.0]])
    full, stream = Standardize(2), Standardize(2)
    full.update(x)
    stream.update(x[:1])
    stream.update(x[1:])
    mean, std = x.mean(0), x.std(0, unbiased=False)
    assert torch.allclose(full(x), (x - mean) / std, atol=1e-6)
    assert torch.allclose(stream(x), full(x), atol=1e-6)


def test_format_table_one_row_per_encoder_and_old_results() -> None:
    new = {"epoch": 3, "metrics": {"linear": {"top1": 80.0, "top5": 99.0},
                                   "knn": {"top1": 70.25, "top5": 90.0}},
           "num_train_videos": 6, "num_test_videos": 3, "seconds": {"total": 1.5},
           "protocol": {"mode": "cached", "classifier": "lbfgs", "feature_norm": "l2",
                        "test_clips": 10, "test_crops": 3}}
    old = {"top1": 50.0, "top5": 75.0, "num_train_videos": 6, "num_test_videos": 3}
    lines = format_table([("trained", new), ("old", old)]).splitlines()
    assert lines[0].startswith("| encoder | epoch | linear top-1 | linear top-5 | kNN top-1 |")
    assert "R@1" not in lines[0]  # no row has retrieval: no empty columns
    assert lines[2] == ("| trained | 3 | 80.0 | 99.0 | 70.2 | 90.0 | 6 / 3 | "
                        "lbfgs, l2, 10x3 | 1.5 |")
    assert lines[3] == "| old | - | 50.0 | 75.0 | - | - | 6 / 3 | - | - |"


def _fake_checkpoints(run: Path, epochs: list[int]) -> list[Path]:
    """Lightning-style checkpoints of a small3d (width 8) with different weights."""
    paths = []
    for e in epochs:
        torch.manual_seed(e)
        state = build_backbone("small3d", width=8).state_dict()
        path = run / "checkpoints" / f"epoch{e:03d}.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": e, "state_dict": {f"backbone.{k}": v for k, v in state.items()}},
                   path)
        paths.append(path)
    return paths


def _args(data: Path, out: Path) -> list[str]:
    return [f"data.root={data / 'videos'}", f"data.annotations={data / 'annotations'}",
            f"out_dir={out}", "name=tiny", "data.num_workers=0", "backbone.width=8",
            "objective.proj_hidden=32", "probe.train_clips=1", "probe.test_clips=2",
            "probe.test_crops=3", "probe.epochs=10"]


def test_probe_command_compares_checkpoints_and_plots(
    tiny_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    run = tmp_path / "runs" / "tiny" / "version_0"
    ckpts = _fake_checkpoints(run, [0, 3])
    png = tmp_path / "curve.png"
    args = _args(tiny_videos, tmp_path / "runs")
    code = main(["probe", CONFIG, *args[:2], "--plot", str(png), "--checkpoints", "random",
                 *map(str, ckpts), *args[2:]])  # overrides before and after the options
    assert code == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert [r.split(" | ")[:2] for r in rows[1:]] == [
        ["| random init", "-"], ["| version_0/epoch000", "0"], ["| version_0/epoch003", "3"]]
    for e in (0, 3):
        res = json.loads((run / f"probe_epoch{e:03d}" / "probe.json").read_text())
        assert res["epoch"] == e and set(res["metrics"]) == {"linear", "knn", "retrieval"}
        assert res["num_test_videos"] == 3 and res["num_train_videos"] == 6
        p = res["protocol"]
        assert (p["test_clips"], p["test_crops"], p["feature_dim"]) == (2, 3, 64)
        assert res["top1"] == res["metrics"]["linear"]["top1"] and len(res["config_hash"]) == 12
    assert json.loads((tmp_path / "runs" / "tiny" / "probe_random" / "probe.json").read_text())[
        "epoch"] is None
    assert Image.open(png).size[0] > 100


def test_probe_command_online_mode(tiny_videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "online"
    code = main(["probe", CONFIG, *_args(tiny_videos, tmp_path / "runs"), "probe.mode=online",
                 "probe.checkpoint=random", "probe.evaluators=[linear]", "probe.online_epochs=2",
                 "probe.batch_size=3", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "probe.json").read_text())
    assert list(res["metrics"]) == ["linear"] and res["protocol"]["mode"] == "online"
    assert res["num_test_videos"] == 3 and 0 <= res["top1"] <= 100
