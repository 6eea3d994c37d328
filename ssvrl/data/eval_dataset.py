"""The test-protocol dataset: K clips spread over each video times 1 or 3 spatial crops.

Multi-view testing as in SlowFast (Feichtenhofer et al., ICCV 2019, Sec. 5: 10 clips uniformly
over time, three crops of the short-side square along the long side) and the CVRL evaluation
(Qian et al., CVPR 2021, Sec. 4.1 / App. A): every clip and crop is scored and the scores or
features are averaged per video by the evaluator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssvrl.data.bad_videos import BadVideoLog
from ssvrl.data.dataset import DecodeConfig, guarded_read, square_crop
from ssvrl.data.index import VideoIndex
from ssvrl.data.sampling import TemporalView, clip_indices, uniform_starts
from ssvrl.data.video_reader import VideoReadError
from ssvrl.data.watchdog import Watchdog


def crop_offsets(H: int, W: int, num_crops: int) -> list[tuple[int, int]]:
    """Top-left corners of ``num_crops`` squares of side ``min(H, W)``.

    One crop: the centre. Three: start, centre and end of the long side (left, centre, right
    for landscape frames; top, centre, bottom for portrait), as in SlowFast's 3-crop test. On a
    square frame the three coincide.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    S = min(H, W)
    cy, cx = (H - S) // 2, (W - S) // 2
    if num_crops == 1:
        return [(cy, cx)]
    if W >= H:
        return [(cy, 0), (cy, cx), (cy, W - S)]
    return [(0, cx), (cy, cx), (H - S, cx)]


class EvalClipDataset(Dataset):
    """Test protocol: ``num_clips`` clips spread evenly over each video x ``num_crops`` squares.

    Returns ``{"clips": uint8 (K, 3, T, S, S), "label", "index", "valid"}`` with
    ``K = num_clips * num_crops`` in clip-major order: entry ``k`` is clip ``k // num_crops``
    (in time order) at crop ``k % num_crops`` (start, centre, end of the long side), and
    ``S = min(H, W)`` of the decoded frame (``decode.short_side``). An unreadable video is
    recorded and returned with ``valid=False`` (zeros), so the caller can exclude it and report
    it rather than silently substitute another video's label.
    """

    def __init__(
        self,
        index: VideoIndex,
        view: TemporalView,
        num_clips: int,
        decode: DecodeConfig,
        bad: BadVideoLog,
        *,
        num_crops: int = 1,
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        crop_offsets(1, 1, num_crops)  # validates num_crops
        self.index, self.view, self.decode, self.bad = index, view, decode, bad
        self.num_clips, self.num_crops = num_clips, num_crops
        self.watchdog = Watchdog(decode.timeout)

    @property
    def clips_per_video(self) -> int:
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        rec = self.index.records[idx]
        S, T, K = self.decode.short_side, self.view.frames, self.clips_per_video
        out = {
            "label": rec.label,
            "index": idx,
            "valid": False,
            "clips": torch.zeros(K, 3, T, S, S, dtype=torch.uint8),
        }
        if self.bad.is_bad(rec.path):
            return out
        try:
            clips = guarded_read(self.watchdog, rec.path, self._choose, self.decode)
        except VideoReadError as err:
            self.bad.record(rec.path, err.reason)
            return out
        crops = []
        for c in range(self.num_clips):
            clip = clips[str(c)]  # (T, H, W, 3)
            for offset in crop_offsets(clip.shape[1], clip.shape[2], self.num_crops):
                crops.append(square_crop(clip, None, offset))  # (3, T, S, S)
        out["clips"] = torch.stack(crops)  # (K, 3, T, S, S), clip-major
        out["valid"] = True
        return out

    def _choose(self, num_frames: int, fps: float | None) -> dict[str, np.ndarray]:
        starts = uniform_starts(num_frames, self.view.span_at(fps), self.num_clips)
        return {
            str(k): clip_indices(s, self.view, num_frames, fps) for k, s in enumerate(starts)
        }
