"""Which videos ``ssvrl extract`` reads and where each one's feature array goes.

Every video (file or frame folder) gets ``<out>/<its path relative to its root>`` with the
extension replaced by ``.npy``, so the output tree mirrors the dataset the way temporal
localisation code expects to look features up by video name (TSP, Alwassel et al. 2021).
Roots: a scanned folder is its own root; a text list's entries are named relative to the list's
folder (entries outside it keep their absolute path minus the leading ``/``); a dataset index
uses ``data.root``. Videos whose names differ only by extension (``v.mp4``, ``v.avi``) keep it:
``v.mp4.npy``, ``v.avi.npy``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ssvrl.data.formats_folder import VIDEO_EXTENSIONS
from ssvrl.data.index import VideoIndex

log = logging.getLogger("ssvrl")

__all__ = ["VideoItem", "videos_from_path", "videos_from_indexes", "feature_name"]


@dataclass(frozen=True)
class VideoItem:
    """A video to extract: its file or frame folder, and its ``.npy`` path relative to out."""

    path: Path
    feature: Path


def feature_name(rel: Path) -> Path:
    """``a/b/v.mp4`` -> ``a/b/v.npy``; a frame folder ``a/b/v`` -> ``a/b/v.npy``."""
    suffix = rel.suffix if rel.suffix.lower() in VIDEO_EXTENSIONS else ""
    return rel.with_name(rel.name[: len(rel.name) - len(suffix)] + ".npy")


def _is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _scan(root: Path, frame_template: str) -> list[Path]:
    """Video files and frame folders under ``root`` (recursively, sorted, hidden folders and
    the insides of frame folders skipped)."""
    first_frame = frame_template.format(1)
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        if first_frame in files:  # a frame folder is one video; its JPEGs are not videos
            found.append(Path(folder))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / f for f in sorted(files) if _is_video_file(Path(f)))
    return sorted(found)


def _read_list(path: Path) -> list[Path]:
    """Paths of a text list: one per line, blank lines and ``#`` comments skipped, relative
    entries resolved against the list's folder."""
    entries = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entry = Path(line).expanduser()
            entries.append(entry if entry.is_absolute() else path.parent / entry)
    return entries


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:  # outside the root: keep the whole path, made relative
        return Path(*path.parts[1:]) if path.is_absolute() else path


def videos_from_path(path: Path, frame_template: str = "img_{:05d}.jpg") -> list[VideoItem]:
    """A folder (scanned recursively), one video file, or a text file listing videos.

    Raises:
        ValueError: the path does not exist, or lists or holds no video.
    """
    if not path.exists():
        raise ValueError(f"--videos: no such file or folder {path}")
    if path.is_dir():
        videos = _scan(path, frame_template)
        root = path.parent if videos == [path] else path  # a frame folder is named after itself
    elif _is_video_file(path):
        root, videos = path.parent, [path]
    else:
        root, videos = path.parent, _read_list(path)
    if not videos:
        raise ValueError(f"--videos: no video files or frame folders in {path}")
    return _unique([VideoItem(v, feature_name(_relative(v, root))) for v in videos])


def videos_from_indexes(indexes: Iterable[VideoIndex]) -> list[VideoItem]:
    """Every video of the given dataset subsets (train and test), each once, in index order."""
    seen: set[Path] = set()
    items = []
    for index in indexes:
        for rec in index.records:
            if rec.path not in seen:
                seen.add(rec.path)
                items.append(VideoItem(rec.path, feature_name(_relative(rec.path, index.root))))
    return _unique(items)


def _unique(items: list[VideoItem]) -> list[VideoItem]:
    """``items`` without repeated videos. Videos that would share a feature file (``v.mp4``
    and ``v.avi`` side by side) keep their extension instead: ``v.mp4.npy``, ``v.avi.npy``."""
    items = list({item.path: item for item in items}.values())
    count: dict[Path, int] = {}
    for item in items:
        count[item.feature] = count.get(item.feature, 0) + 1
    clashes = [item for item in items if count[item.feature] > 1]
    if clashes:
        log.warning(
            "%d videos share a name up to the extension (first: %s); their feature files keep "
            "the extension (name.ext.npy)",
            len(clashes),
            clashes[0].path,
        )
    out = [
        VideoItem(item.path, item.feature.with_name(item.path.name + ".npy"))
        if count[item.feature] > 1
        else item
        for item in items
    ]
    names = [item.feature for item in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"two videos would write the same feature file {dup}")
    return out
