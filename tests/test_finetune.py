"""Fine-tuning (``ssvrl finetune``): start weights, end-to-end updates, multi-clip scores, JSON."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from ssvrl.cli import load_experiment, main
from ssvrl.config.loader import ConfigError, config_hash
from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset
from ssvrl.engine.build import build_encoder
from ssvrl.engine.finetune import build_finetune_module, finetune_dir
from ssvrl.eval.video_scores import average_clip_scores, clip_accuracy, score_videos

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "finetune" / "quickstart.yaml")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 classes, 36 training and 12 test videos of 40 frames."""
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
        "name=ft",
        "backbone.width=8",
        "data.num_workers=0",
        "data.max_bad_fraction=0.5",
        "trainer.progress_bar=false",
        "finetune.epochs=1",
        "finetune.batch_size=8",
        "finetune.frames=4",
        "finetune.crop_size=32",
        "finetune.test_clips=2",
        "finetune.test_batch_size=4",
        "finetune.lr=0.01",
        "finetune.warmup_epochs=0",
    ]


def _save_start_checkpoint(cfg: object, path: Path) -> dict[str, torch.Tensor]:
    """A pretraining-style checkpoint (``state_dict`` with ``backbone.`` keys) of weights that
    no seed produces: every float entry shifted by 0.5."""
    torch.manual_seed(123)
    encoder = build_encoder(cfg)  # type: ignore[arg-type]
    state = {
        k: v + 0.5 if v.is_floating_point() else v.clone() for k, v in encoder.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, path)
    return state


def test_average_clip_scores_known_answer() -> None:
    """Softmax per clip, then the mean over clips: logits log(p) give back p exactly."""
    p = torch.tensor(
        [
            [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.6, 0.1, 0.3]],  # video 0: mean 0.4/0.333/0.267
            [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.001, 0.998, 0.001]],  # video 1
        ]
    )
    shifted = p.log() + torch.tensor([0.0, 7.0, -3.0])[None, :, None]  # per-clip constants
    expected = torch.tensor([[1.2, 1.0, 0.8], [1.801, 1.098, 0.101]]) / 3
    assert torch.allclose(average_clip_scores(shifted), expected, atol=1e-6)
    # Averaging logits instead would let video 1's one confident clip outvote the other two.
    assert average_clip_scores(shifted)[1].argmax() == 0
    assert shifted[1].mean(dim=0).argmax() == 1


class _Lookup(nn.Module):
    """Clip of constant value v -> logits log(P[v]): known scores for known clips."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        v = x[:, 0, 0, 0, 0].long()  # (N,)
        return self.table[v].log()  # (N, classes)


def test_score_videos_keeps_clips_with_their_video() -> None:
    """Three videos of two clips in batches of two; clip k of video n has value 10 n + k."""
    table = torch.full((32, 2), 0.5)
    table[[0, 1, 10, 11, 20, 21]] = torch.tensor(
        [[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]]
    )
    clips = torch.tensor([[0, 1], [10, 11], [20, 21]], dtype=torch.uint8)  # (N, K)
    clips = clips[:, :, None, None, None, None].expand(3, 2, 3, 2, 4, 4).contiguous()
    valid = torch.tensor([True, True, False])
    batches = [
        {"clips": clips[i : i + 2], "label": torch.tensor([0, 1, 1])[i : i + 2],
         "valid": valid[i : i + 2], "index": torch.arange(3)[i : i + 2]}
        for i in (0, 2)
    ]
    model = _Lookup(table).train()
    out = score_videos(model, batches, lambda x: x.float(), torch.device("cpu"))
    expected = torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4]])
    assert torch.allclose(out.scores, expected, atol=1e-6)
    assert out.clip_logits.shape == (3, 2, 2) and out.valid.tolist() == [True, True, False]
    assert out.index.tolist() == [0, 1, 2] and out.labels.tolist() == [0, 1, 1]
    assert model.modes == [False, False] and model.training  # eval inside, mode restored
    # Single clips of the readable videos (labels 0, 1): one hit and one miss each.
    assert clip_accuracy(out) == 50.0


@pytest.mark.parametrize(
    ("override", "key"),
    [("finetune.epoch=3", "finetune.epoch"), ("finetune.scale=[0.9,0.2]", "finetune.scale")],
)
def test_bad_finetune_key_fails_at_load(override: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_experiment(CONFIG, [override])
    assert err.value.key == key and key in str(err.value)
    yaml = tmp_path / "typo.yaml"
    yaml.write_text(f"inherit: {CONFIG}\nfinetune:\n  dropuot: 0.1\n")
    with pytest.raises(ConfigError, match=r"finetune\.dropuot.*Did you mean .finetune\.dropout"):
        load_experiment(str(yaml), [])
    assert main(["finetune", CONFIG, override, f"out_dir={tmp_path / 'runs'}"]) == 2
    assert not (tmp_path / "runs").exists()  # nothing written before the config is valid


def test_output_folders() -> None:
    cfg = load_experiment(CONFIG, ["out_dir=/o", "name=n"])
    assert finetune_dir(cfg, None) == Path("/o/n/finetune_random")
    ckpt = Path("/o/n/version_3/checkpoints/epoch001.ckpt")
    assert finetune_dir(cfg, ckpt) == Path("/o/n/version_3/finetune_epoch001")
    assert finetune_dir(cfg, Path("/w/enc.pt")) == Path("/w/finetune_enc")


def test_training_starts_from_the_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    cfg = load_experiment(CONFIG, _overrides(tiny_data, tmp_path))
    ckpt = tmp_path / "last.ckpt"
    start = _save_start_checkpoint(cfg, ckpt)
    module, view = build_finetune_module(cfg, ckpt, num_classes=6)
    loaded = module.backbone.state_dict()
    assert loaded.keys() == start.keys()
    assert all(torch.equal(loaded[k], start[k]) for k in start)
    random_init, _ = build_finetune_module(cfg, None, num_classes=6)
    conv = next(k for k, v in start.items() if v.dim() == 5)
    assert not torch.equal(random_init.backbone.state_dict()[conv], start[conv])
    assert module.head.out_features == 6 and (view.frames, view.stride) == (4, 4)
    assert module.augment.cfg.crop_size == 32 and module.augment.cfg.flip_p == 0.0
    assert module.augment.cfg.grayscale_p == 0.0 and module.augment.cfg.blur_p == 0.0
    wider = load_experiment(CONFIG, [*_overrides(tiny_data, tmp_path), "backbone.width=16"])
    with pytest.raises(ConfigError, match="do not fit the backbone") as err:
        build_finetune_module(wider, ckpt, num_classes=6)  # a width-8 checkpoint
    assert err.value.key == "finetune.checkpoint"


def test_finetune_end_to_end(tiny_data: Path, tmp_path: Path) -> None:
    """From a checkpoint, with one unreadable test video: every encoder weight moves, the
    JSON holds the protocol, the bad video is skipped and counted."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    first_test = (data / "annotations" / "testlist01.txt").read_text().split()[0]
    (data / "videos" / first_test).write_bytes(b"")
    args = _overrides(data, tmp_path / "runs")
    cfg = load_experiment(CONFIG, args)
    ckpt = tmp_path / "runs" / "ft" / "version_0" / "checkpoints" / "last.ckpt"
    start = _save_start_checkpoint(cfg, ckpt)
    assert main(["finetune", CONFIG, *args, f"finetune.checkpoint={ckpt}"]) == 0

    out = ckpt.parent.parent / "finetune_last"
    result = json.loads((out / "finetune.json").read_text())
    assert result["checkpoint"] == str(ckpt) and result["config_hash"] == config_hash(
        load_experiment(CONFIG, [*args, f"finetune.checkpoint={ckpt}"])
    )
    assert 0 <= result["top1"] <= result["top5"] <= 100 and not math.isnan(result["clip_top1"])
    assert (result["num_train_videos"], result["num_test_videos"]) == (36, 11)
    assert result["unreadable_videos"] == 1
    p = result["protocol"]
    assert (p["test_clips_per_video"], p["frames"], p["stride"], p["crop"]) == (2, 4, 4, 32)
    assert p["train_clips_per_video_per_epoch"] == 1 and p["epochs"] == 1
    assert p["score_averaging"].startswith("softmax") and p["train_augment"]["flip_p"] == 0.0
    assert set(result["seconds"]) == {"fit", "test", "total"}
    assert "train/loss" in (out / "logs" / "version_0" / "metrics.csv").read_text()
    assert json.loads((out / "bad_videos.json").read_text())["count"] == 1

    tuned = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert tuned["head.weight"].shape[0] == 6
    weights = [k for k, v in start.items() if v.dim() >= 2]  # every conv / linear weight
    assert weights and all(not torch.equal(tuned[f"backbone.{k}"], start[k]) for k in weights)
    stats = [k for k in start if k.endswith("running_mean")]  # batch norm adapts too
    assert stats and all(not torch.equal(tuned[f"backbone.{k}"], start[k]) for k in stats)
