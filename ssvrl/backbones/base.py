"""The backbone contract and its registry.

Every encoder maps clips ``(B, C, T, H, W)`` to pooled features ``(B, D)`` with ``D =
num_features``, and exposes the unpooled map ``(B, D, T', H', W')`` through
``forward_features`` for objectives that need time (TEG) or space (MCL saliency).

Time: :meth:`VideoBackbone.forward_temporal` gives the map pooled over space only, ``(B, D,
T')``, for dense temporal objectives (TEG, Qian et al. BMVC 2022, Sec. 3.1: "dense temporal
embeddings"). Which input frames each of the ``T'`` steps looks at follows from the layers that
stride or pad time asymmetrically, declared per backbone in ``temporal_layers`` as ``(kernel,
stride, padding)`` triples: :meth:`~VideoBackbone.temporal_size` is ``T'`` for ``T`` input
frames and :meth:`~VideoBackbone.temporal_centres` the input frame (a float position, 0 = first
frame) at the centre of each step's receptive field. Layers with an odd kernel, stride 1 and
padding ``kernel // 2`` change neither and are left out.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ssvrl.registry import Registry

BACKBONES: Registry[type[VideoBackbone]] = Registry("backbone")


TemporalLayer = tuple[int, int, int]
"""``(kernel, stride, padding)`` of a layer along time."""


def temporal_geometry(layers: Sequence[TemporalLayer], frames: int) -> tuple[int, float, float]:
    """``(T', first, step)``: ``T'`` output steps for ``frames`` input frames, step ``i`` centred
    on input position ``first + step * i``.

    Each layer maps ``n`` steps to ``(n + 2 p - k) // s + 1`` and output ``i`` is centred on its
    input position ``i s - p + (k - 1) / 2`` (a symmetric window); composing the affine maps
    gives the centres in input frames.
    """
    n, first, step = frames, 0.0, 1.0
    for k, s, p in layers:
        n = (n + 2 * p - k) // s + 1
        first, step = first + step * ((k - 1) / 2 - p), step * s
    if n < 1:
        raise ValueError(f"{frames} frames are too few for temporal layers {list(layers)}")
    return n, first, step


class VideoBackbone(nn.Module):
    """Base class: subclasses set ``num_features`` and implement ``forward_features``; those
    that stride time also set ``temporal_layers`` (see the module docstring)."""

    num_features: int
    build_options: dict[str, object]  # set by build_backbone (what ``ssvrl export`` records)
    temporal_layers: ClassVar[tuple[TemporalLayer, ...]] = ()

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, D, T')``: the feature map averaged over space only.

        Its mean over time is :meth:`forward`'s output (equal-size groups), so objectives can
        pool it instead of a second encoder pass.
        """
        return self.forward_features(x).mean(dim=(3, 4))  # (B, D, T')

    def temporal_size(self, frames: int) -> int:
        """``T'`` of :meth:`forward_temporal` for clips of ``frames`` frames."""
        return temporal_geometry(self.temporal_layers, frames)[0]

    @property
    def temporal_stride(self) -> int:
        """Input frames between two consecutive output steps (1 when time is not strided)."""
        return int(temporal_geometry(self.temporal_layers, 1 << 12)[2])

    def temporal_centres(self, frames: int) -> np.ndarray:
        """``(T',)`` float input position (0 = first frame) at the centre of each output step."""
        n, first, step = temporal_geometry(self.temporal_layers, frames)
        return first + step * np.arange(n, dtype=np.float64)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, D, T', H', W')``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, D)``: global average pool of the feature map."""
        return self.forward_features(x).mean(dim=(2, 3, 4))  # (B, D)


def build_backbone(
    name: str, weights: str | None = None, input: str = "rgb", **kwargs: object
) -> VideoBackbone:
    """Instantiate a registered backbone; ``weights`` is a local state-dict file (safe load).

    ``name`` is looked up in the registry only (nothing is imported from it). ``input``:
    ``"rgb"`` (frames) or ``"residual"`` (frame differences, the backbone wrapped in
    :class:`~ssvrl.backbones.residual.ResidualInput`). The options (and a non-RGB ``input``)
    are kept on the model as ``build_options``, so ``ssvrl export`` can write them next to the
    weights and :func:`ssvrl.load_backbone` rebuild the same model.
    """
    from ssvrl.backbones.residual import INPUTS, ResidualInput

    if input not in INPUTS:
        raise ValueError(f"backbone input must be one of {INPUTS}, got {input!r}")
    model = BACKBONES.get(name)(**kwargs)
    if input == "residual":
        model = ResidualInput(model)
    model.build_options = dict(kwargs) if input == "rgb" else {**kwargs, "input": input}
    if weights:
        load_weights(model, Path(weights))
    return model


def load_weights(model: nn.Module, path: Path, encoder: str = "student") -> None:
    """Load a state dict from ``.safetensors`` or a torch file with ``weights_only=True``.

    Keys under ``backbone.`` (an ssvrl checkpoint) are taken and stripped; a Lightning
    checkpoint's ``state_dict`` entry is unwrapped. Missing or unexpected keys raise.
    ``encoder="teacher"`` takes the EMA teacher's copy of the encoder instead
    (:func:`teacher_prefix`; :class:`NoTeacherError` when the file holds none).
    Every file that holds weights (``backbone.weights``, probe and export checkpoints, 2D ViT
    weights to inflate) comes through here; a pickle that would build anything but tensors and
    plain containers is refused, unexecuted, with a ValueError (``torch.load``'s restricted
    unpickler stops at the first disallowed global, before calling it).
    """
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    state = _read_state(path)
    prefix = teacher_prefix(state, path) if encoder == "teacher" else "backbone."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path}: weights do not fit the backbone: {err}") from err
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit the backbone: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


ENCODERS = ("student", "teacher")
"""Which encoder of a checkpoint to load: the trained one (``backbone.*``) or its EMA teacher."""


class NoTeacherError(ValueError):
    """The weights file holds no EMA teacher encoder (see :func:`teacher_prefix`)."""


def teacher_prefix(state: dict[str, torch.Tensor], path: Path) -> str:
    """The key prefix of the EMA teacher encoder in a training checkpoint's state dict.

    Objectives with a momentum teacher of the encoder (SVT's teacher, MoCo's key encoder) keep
    it in a :class:`~ssvrl.objectives.momentum.MomentumCopy`, a deep copy of the encoder saved
    under ``objective.<attribute>.net.``: the prefix whose keys, stripped, are exactly those of
    the ``backbone.*`` weights. Raises :class:`NoTeacherError` naming ``path`` when no prefix
    or more than one qualifies.
    """
    student = {k[len("backbone.") :] for k in state if k.startswith("backbone.")}
    copies: dict[str, set[str]] = {}
    for key in state:
        parts = key.split(".", 3)  # objective, <attribute>, net, rest
        if len(parts) == 4 and parts[0] == "objective" and parts[2] == "net":
            copies.setdefault(".".join(parts[:3]) + ".", set()).add(parts[3])
    found = sorted(p for p, keys in copies.items() if student and keys == student)
    if len(found) == 1:
        return found[0]
    if found:
        raise NoTeacherError(f"{path}: several encoder copies {found}; cannot tell the teacher")
    raise NoTeacherError(
        f"{path}: holds no EMA teacher encoder (no objective.<name>.net.* copy of its "
        "backbone.* weights). Objectives with a momentum teacher (svt, moco) save one in their "
        "training checkpoints; others (e.g. cvrl) and exported .safetensors files have none."
    )


def find_teacher(path: Path) -> str:
    """:func:`teacher_prefix` of the weights file ``path`` (to fail early, before any work)."""
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    return teacher_prefix(_read_state(path), path)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """The file's state dict: safetensors (no code at all) or a restricted torch unpickle."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise ValueError(f"{path}: not a valid safetensors file: {err}") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message advises weights_only=False; keep only the line naming the global.
        lines = [ln.strip() for ln in str(err).splitlines() if "Unsupported" in ln]
        why = lines[0].split(". Please")[0] if lines else "not a plain weights file"
        raise ValueError(
            f"{path}: refused to load: the file asks to build Python objects other than tensors "
            f"and plain containers, which could run code ({why}). Load only weights you "
            "trust; convert trusted ones to .safetensors."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state
