"""ssvrl: self-supervised video representation learning (CVRL, TEG, MCL, FAME, SVT).

Public API: :func:`load_backbone` rebuilds an encoder written by ``ssvrl export``. It is
imported on first use (PEP 562), so ``import ssvrl`` and the CLI's config checks stay free of
torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_backbone"]

if TYPE_CHECKING:
    from ssvrl.export import load_backbone


def __getattr__(name: str) -> Any:
    if name == "load_backbone":
        from ssvrl.export import load_backbone

        return load_backbone
    raise AttributeError(f"module 'ssvrl' has no attribute {name!r}")
