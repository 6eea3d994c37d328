"""``ssvrl fit --resume PATH|auto [--force-resume]``: the config stored in checkpoints, the
refusal (exit 2, every differing key listed) of a resume whose config changes results, the keys
that may differ, and older checkpoints (no stored config, no data position) resumed anyway."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from ssvrl.cli import load_experiment, main
from ssvrl.config.loader import ConfigError
from ssvrl.engine.resume import CONFIG_KEY, check_resume, plain_config, resolve_resume
from tests.resume_utils import (
    assert_same_training_state,
    load,
    one_thread,
    overrides,
    write_config,
    write_tiny_data,
)


def _fake_checkpoint(path: Path, cfg: object) -> Path:
    torch.save({CONFIG_KEY: plain_config(cfg), "state_dict": {}}, path)
    return path


def _cfg(tmp_path: Path, *extra: str) -> tuple[Path, list[str], object]:
    config = write_config(tmp_path)
    args = overrides(tmp_path / "data", tmp_path / "out", "cvrl", *extra)
    return config, args, load_experiment(str(config), args)


def test_changed_results_keys_are_refused_listing_each(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config, args, old = _cfg(tmp_path)
    ckpt = _fake_checkpoint(tmp_path / "old.ckpt", old)
    new = [*args, "optim.lr=0.002", "trainer.max_epochs=4", "data.num_workers=3"]
    assert main(["fit", str(config), *new, "--resume", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "2 key(s) that change results" in err
    assert "optim.lr: 0.001 -> 0.002" in err and "trainer.max_epochs: 2 -> 4" in err
    assert "num_workers" not in err  # may differ: samples do not depend on workers
    assert "--force-resume" in err
    assert not (tmp_path / "out").exists()  # refused before any run folder is made


def test_keys_that_cannot_change_results_may_differ(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, old = _cfg(tmp_path)
    ckpt = _fake_checkpoint(tmp_path / "old.ckpt", old)
    _, _, new = _cfg(tmp_path, "data.num_workers=4", "out_dir=/elsewhere", "name=again",
                     "trainer.progress_bar=true", "trainer.log_every_n_steps=7",
                     "trainer.checkpoint_every_n_steps=5", "probe.epochs=3",
                     "online_probe.val_clips=4")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ssvrl"):
        check_resume(new, ckpt)
    assert "data.num_workers: 0 -> 4" in caplog.text  # reported, not refused
    _, _, changed = _cfg(tmp_path, "seed=1", "trainer.devices=2")
    with pytest.raises(ConfigError, match="seed: 0 -> 1"):
        check_resume(changed, ckpt)
    with caplog.at_level(logging.WARNING, logger="ssvrl"):
        check_resume(changed, ckpt, force=True)
    assert "trainer.devices: 1 -> 2" in caplog.text


def test_resume_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config, args, cfg = _cfg(tmp_path)
    assert main(["fit", str(config), *args, "--force-resume"]) == 2
    assert "--force-resume needs --resume" in capsys.readouterr().err
    assert main(["fit", str(config), *args, "--resume", str(tmp_path / "nope.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["fit", str(config), *args, "--resume", "auto"]) == 2
    assert f"no {tmp_path / 'out' / 'run'}/version_*/checkpoints/last.ckpt" in (
        capsys.readouterr().err
    )
    for version in (0, 2, 10):
        folder = tmp_path / "out" / "run" / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        if version != 10:  # the newest folder has no checkpoint yet
            (folder / "last.ckpt").write_bytes(b"x")
    expected = tmp_path / "out" / "run" / "version_2" / "checkpoints" / "last.ckpt"
    assert resolve_resume(cfg, "auto") == expected


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("resume_config_data"))


def test_an_older_checkpoint_resumes_with_a_warning(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint as ssvrl wrote them before: no config, no data position, no RNG states.
    It is resumed (not refused), from the data position Lightning's loop state implies, here
    the start of epoch 1 with a DataLoader worker (which Lightning alone gets wrong)."""
    from ssvrl.engine.build import fit

    config = write_config(tmp_path)
    cfg = load_experiment(str(config), overrides(tiny_data, tmp_path, "cvrl",
                                                 "data.num_workers=1"))  # fmt: skip
    with one_thread():
        reference = fit(cfg)
        epoch0 = load(reference / "checkpoints" / "epoch000.ckpt")
        assert epoch0[CONFIG_KEY] == plain_config(cfg)  # every checkpoint carries the config
        for key in (CONFIG_KEY, "PretrainDataModule"):
            del epoch0[key]
        epoch0["callbacks"] = {k: v for k, v in epoch0["callbacks"].items() if "Rng" not in k}
        torch.save(epoch0, tmp_path / "old.ckpt")
        with caplog.at_level(logging.WARNING, logger="ssvrl"):
            resumed = fit(cfg, tmp_path / "old.ckpt")
    assert "holds no config" in caplog.text
    assert_same_training_state(reference / "checkpoints" / "last.ckpt",
                               resumed / "checkpoints" / "last.ckpt")  # fmt: skip
