"""What a probe needs to know about a checkpoint file: its epoch, its label, where results go.

Runs keep ``<run>/checkpoints/epoch000.ckpt ...`` and ``last.ckpt`` (Lightning
``ModelCheckpoint``); a Lightning checkpoint stores the zero-based ``epoch`` it was saved in.
"""

from __future__ import annotations

from pathlib import Path

import torch


def checkpoint_epoch(path: Path | None) -> int | None:
    """The Lightning checkpoint's ``epoch``; None for a random init (``None``), a
    ``.safetensors`` file or a plain state dict."""
    if path is None or path.suffix == ".safetensors":
        return None
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    epoch = state.get("epoch") if isinstance(state, dict) else None
    return None if epoch is None else int(epoch)


def checkpoint_label(ckpt: Path | None) -> str:
    """``random init``, ``version_0/epoch002`` for a run's checkpoint, else the file stem."""
    if ckpt is None:
        return "random init"
    if ckpt.parent.name == "checkpoints":
        return f"{ckpt.parent.parent.name}/{ckpt.stem}"
    return ckpt.stem


def probe_dir(ckpt: Path | None, random_dir: Path) -> Path:
    """Where ``probe.json`` goes: ``<run>/`` for a run's ``last.ckpt``, ``<run>/probe_<stem>/``
    for its other checkpoints, ``<folder>/probe_<stem>/`` for a file outside a run, and
    ``random_dir`` for a random init."""
    if ckpt is None:
        return random_dir
    if ckpt.parent.name == "checkpoints":
        run = ckpt.parent.parent
        return run if ckpt.name == "last.ckpt" else run / f"probe_{ckpt.stem}"
    return ckpt.parent / f"probe_{ckpt.stem}"
