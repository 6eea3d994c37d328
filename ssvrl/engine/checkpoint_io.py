"""Lightning checkpoint writes that a kill cannot corrupt (:class:`AtomicCheckpointIO`).

Lightning 2.6's ``TorchCheckpointIO`` (``lightning_fabric.utilities.cloud_io._atomic_save``)
serialises to memory and writes through an fsspec transaction whose temp file comes from
``tempfile.mkstemp()``, i.e. the system temp folder. When that is another filesystem (a
``/tmp`` tmpfs, a node-local disk under a network run folder) the final ``shutil.move`` falls
back to copying into the target path itself, so a kill during the copy leaves a truncated
``last.ckpt``; nothing is fsynced either, so a machine crash can lose a file already renamed.
:func:`ssvrl.utils.atomic_save.atomic_torch_save` writes next to the target, fsyncs and renames.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ssvrl.utils.atomic_save import atomic_torch_save

__all__ = ["AtomicCheckpointIO"]

log = logging.getLogger("ssvrl")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's CheckpointIO with :func:`atomic_torch_save` for local paths (remote URLs
    and ``storage_options`` keep Lightning's fsspec path); loading is Lightning's, with
    ``weights_only`` as the caller says."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        log.debug("saving checkpoint %s", path)
        atomic_torch_save(checkpoint, path)
