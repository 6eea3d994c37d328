"""Batch-norm policy of multi-process training.

With several GPUs every batch-norm layer (backbones, projection heads, and teachers copied
from the encoder) becomes ``SyncBatchNorm`` (Lightning ``sync_batchnorm=True``): statistics over
the global batch, as SimCLR (Chen et al., 2020, Sec. 2: "global BN") and CVRL (Qian et al.,
2021, Sec. 4.1, synchronized BN) train. Per-process statistics over a few clips let a
contrastive model "cheat" by recognising its own rank's batch statistics (SimCLR, Sec. 2) and
are noisy at small per-GPU batches. MoCo's shuffling BN (moco.py) is then redundant, not wrong.

On the CPU (gloo) ``SyncBatchNorm`` is not available (PyTorch raises "SyncBatchNorm expected
input tensor to be on GPU"), so statistics stay per process; the running statistics are rank
0's (DDP broadcasts buffers every step). This is logged, once, where the Trainer is built.

Vision transformers use LayerNorm, which normalises each token by itself: nothing to
synchronise, no policy needed.
"""

from __future__ import annotations

import logging

import torch

from ssvrl.config.schema import TrainerConfig

log = logging.getLogger("ssvrl")

GPU_ACCELERATORS = ("gpu", "cuda")


def sync_batchnorm(t: TrainerConfig) -> bool:
    """True (convert BN to SyncBatchNorm) for a run on more than one GPU; on several CPU
    processes logs that batch-norm statistics stay per process."""
    world = t.devices * t.num_nodes
    if world <= 1:
        return False
    on_gpu = t.accelerator in GPU_ACCELERATORS or (
        t.accelerator == "auto" and torch.cuda.is_available()
    )
    if on_gpu:
        log.info("%d processes on GPUs: batch norm -> SyncBatchNorm (global-batch statistics)",
                 world)
        return True
    log.warning(
        "%d processes on %s: batch-norm statistics stay per process (SyncBatchNorm needs GPUs): "
        "each rank normalises with its own batch; running statistics are rank 0's",
        world, t.accelerator,
    )
    return False
