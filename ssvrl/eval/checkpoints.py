"""What a probe needs to know about a checkpoint file: its epoch, its label, where results go.

Runs keep ``<run>/checkpoints/epoch000.ckpt ...`` and ``last.ckpt`` (Lightning
``ModelCheckpoint``); a Lightning checkpoint stores the zero-based ``epoch`` it was saved in.

Which encoder: a checkpoint spec (``last``, a path) may end in ``:teacher`` to evaluate the EMA
teacher's encoder (SVT's teacher, MoCo's key encoder) instead of the trained one, as DINO
(Caron et al., ICCV 2021, Sec. 4) evaluates its teacher; ``:student`` is the default, spelt out.
The weights come from :func:`ssvrl.backbones.base.load_weights` with ``encoder="teacher"``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ssvrl.backbones.base import ENCODERS


def split_encoder(spec: str) -> tuple[str, str]:
    """``"last:teacher"`` -> ``("last", "teacher")``; without a suffix the encoder is
    ``"student"``. Only ``:teacher`` and ``:student`` are suffixes, so other colons in a path
    stay part of it."""
    base, sep, suffix = spec.rpartition(":")
    if sep and base and suffix in ENCODERS:
        return base, suffix
    return spec, "student"


def checkpoint_epoch(path: Path | None) -> int | None:
    """The Lightning checkpoint's ``epoch``; None for a random init (``None``), a
    ``.safetensors`` file or a plain state dict."""
    if path is None or path.suffix == ".safetensors":
        return None
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    epoch = state.get("epoch") if isinstance(state, dict) else None
    return None if epoch is None else int(epoch)


def checkpoint_label(ckpt: Path | None, encoder: str = "student") -> str:
    """``random init``, ``version_0/epoch002`` for a run's checkpoint, else the file stem;
    ``:teacher`` appended for the teacher encoder."""
    if ckpt is None:
        return "random init"
    name = ckpt.stem
    if ckpt.parent.name == "checkpoints":
        name = f"{ckpt.parent.parent.name}/{name}"
    return name + (":teacher" if encoder == "teacher" else "")


def probe_dir(ckpt: Path | None, random_dir: Path, encoder: str = "student") -> Path:
    """Where ``probe.json`` goes: ``<run>/`` for a run's ``last.ckpt``, ``<run>/probe_<stem>/``
    for its other checkpoints, ``<folder>/probe_<stem>/`` for a file outside a run, and
    ``random_dir`` for a random init. The teacher's go to ``probe_<stem>_teacher/`` in the same
    places (``last.ckpt``'s too), never over the student's."""
    if ckpt is None:
        return random_dir
    teacher = encoder == "teacher"
    where = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if ckpt.parent.name == "checkpoints" and ckpt.name == "last.ckpt" and not teacher:
        return where
    return where / f"probe_{ckpt.stem}{'_teacher' if teacher else ''}"
