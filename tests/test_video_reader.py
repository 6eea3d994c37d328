"""ssvrl.data.video_reader on the real sample videos and on synthetic frame-numbered videos.

The synthetic videos write each frame's index into the picture as 8 black/white stripes (one
bit each), so a decoded frame tells which frame it is: random access is checked frame-exact.
"""

from __future__ import annotations

import ast
import pickle
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from ssvrl.data.video_reader import (
    VideoReadError,
    available_backends,
    open_video,
    output_size,
)

BACKENDS = ["decord", "pyav"]
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def mm(shared_data: Path) -> Path:
    return shared_data / "mmaction2"


def _encode_numbered(
    path: Path,
    codec: str,
    *,
    n: int = 48,
    gop: int = 12,
    closed: bool = True,
    height: int = 64,
    width: int = 128,
) -> Path:
    """Write ``n`` frames with B-frames and a keyframe every ``gop`` frames; frame i shows i."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size, stream.codec_context.max_b_frames = gop, 2
        if codec == "libx264":
            options = {"bf": "2", "keyint_min": str(gop), "sc_threshold": "0"}
            stream.codec_context.options = options | (
                {} if closed else {"x264-params": "open-gop=1"}
            )
        elif closed:
            stream.codec_context.options = {"flags": "+cgop", "sc_threshold": "1000000000"}
        for i in range(n):
            bits = (i >> np.arange(8)) & 1  # (8,)
            image = np.repeat(bits * 255, width // 8).astype(np.uint8)  # (W,)
            image = np.broadcast_to(image[None, :, None], (height, width, 3)).copy()  # (H, W, 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _frame_numbers(frames: torch.Tensor) -> list[int]:
    """Read back the index drawn by :func:`_encode_numbered` from (T, H, W, 3) frames."""
    t, _, w, _ = frames.shape
    stripes = frames[..., 0].float().reshape(t, -1, 8, w // 8).mean(dim=(1, 3))  # (T, 8)
    return ((stripes > 128).long() * (2 ** torch.arange(8))).sum(1).tolist()


SYNTHETIC = {  # name: (codec, closed GOP)
    "h264_closed.mp4": ("libx264", True),
    "h264_open.mkv": ("libx264", False),
    "h264_open.avi": ("libx264", False),
    "mpeg4_closed.avi": ("mpeg4", True),
    "mpeg4_open.mp4": ("mpeg4", False),
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("numbered")
    return {
        name: _encode_numbered(folder / name, codec, closed=closed)
        for name, (codec, closed) in SYNTHETIC.items()
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name, frames, fps, size",
    [
        ("test.mp4", 300, 30.0, (256, 340)),
        ("test.avi", 164, 25.0, (240, 320)),
        ("rawvideo_part_0.mp4", 32, 30.0, (256, 340)),
        ("demo_skeleton_1080p.mp4", 72, 2160 / 77, (1080, 1920)),
    ],
)
def test_metadata(
    mm: Path, backend: str, name: str, frames: int, fps: float, size: tuple[int, int]
) -> None:
    with open_video(mm / name, backend) as reader:
        assert (reader.num_frames, reader.size) == (frames, size)
        assert reader.fps == pytest.approx(fps, rel=1e-4)
        assert reader.path == mm / name


def test_output_size() -> None:
    assert output_size(1080, 1920, 64) == (64, 114)  # 113.78 rounds to nearest
    assert output_size(1920, 1080, 64) == (114, 64)  # portrait
    assert output_size(240, 320, 128) == (128, 171)
    assert output_size(240, 320, None) == (240, 320)
    with pytest.raises(ValueError):
        output_size(240, 320, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_side_resize_on_decode(mm: Path, backend: str) -> None:
    with open_video(mm / "demo_skeleton_1080p.mp4", backend, short_side=64) as reader:
        assert reader.size == (64, 114)
        frames = reader.get_frames([0, 71])
    assert frames.shape == (2, 64, 114, 3) and frames.dtype == torch.uint8
    assert frames.float().std() > 10  # a real picture, not a blank buffer


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_repeats_and_empty(mm: Path, backend: str) -> None:
    with open_video(mm / "test.mp4", backend) as reader:
        out = reader.get_frames([250, 2, 250, 0])  # crosses the keyframe at 235
        singles = [reader.get_frames([i])[0] for i in (250, 2, 0)]
        empty = reader.get_frames([])
    assert out.shape == (4, 256, 340, 3) and out.dtype == torch.uint8
    assert torch.equal(out[0], singles[0]) and torch.equal(out[2], singles[0])
    assert torch.equal(out[1], singles[1]) and torch.equal(out[3], singles[2])
    assert not torch.equal(out[0], out[1])
    assert empty.shape == (0, 256, 340, 3)


@pytest.mark.parametrize("short_side", [None, 128])
@pytest.mark.parametrize(
    "name, indices",
    [
        ("test.mp4", [0, 1, 150, 234, 235, 236, 299, 5]),
        ("test.avi", [0, 1, 2, 3, 80, 163, 40]),  # with an audio stream: video stream 0 read
        ("demo.mp4", [0, 100, 279, 50]),
        ("rawvideo_part_0.mp4", [0, 31, 16]),
        ("demo_skeleton_1080p.mp4", [0, 71, 35]),
    ],
)
def test_backends_agree(mm: Path, name: str, indices: list[int], short_side: int | None) -> None:
    """Same indices give the same frames. Measured: identical at native size; with bicubic
    resize to 128 the mean abs difference is 0.41 (mp4) / 0.22 (avi), max 18 / 14."""
    with (
        open_video(mm / name, "decord", short_side=short_side) as dec,
        open_video(mm / name, "pyav", short_side=short_side) as pav,
    ):
        near = sorted({j for i in indices for j in (i - 1, i, i + 1) if 0 <= j < dec.num_frames})
        frames = dec.get_frames(near).float()  # (len(near), H, W, 3)
        reference = dict(zip(near, frames, strict=True))  # index -> (H, W, 3)
        b = pav.get_frames(indices)
    a = torch.stack([reference[i] for i in indices])  # decord's frames, (T, H, W, 3)
    diff = (a - b.float()).abs()
    if short_side is None:
        assert diff.max() == 0
    assert diff.mean() < 1.0 and diff.max() < 40
    for k, i in enumerate(indices):  # pyav frame i is closest to decord frame i, not i +- 1
        errors = {
            j: (reference[j] - b[k].float()).abs().mean()
            for j in (i - 1, i, i + 1)
            if j in reference
        }
        assert min(errors, key=errors.__getitem__) == i


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_pyav_random_access_is_frame_exact(synthetic: dict[str, Path], name: str) -> None:
    rng = np.random.default_rng(0)
    with open_video(synthetic[name], "pyav", short_side=48) as reader:
        assert reader.num_frames == 48
        assert _frame_numbers(reader.get_frames(range(48))) == list(range(48))
        for _ in range(25):
            indices = rng.integers(0, 48, size=int(rng.integers(1, 9))).tolist()
            assert _frame_numbers(reader.get_frames(indices)) == indices


def test_decord_random_access_is_frame_exact_on_h264_mp4(synthetic: dict[str, Path]) -> None:
    rng = np.random.default_rng(1)
    with open_video(synthetic["h264_closed.mp4"], "decord") as reader:
        for _ in range(25):
            indices = rng.integers(0, 48, size=int(rng.integers(1, 9))).tolist()
            assert _frame_numbers(reader.get_frames(indices)) == indices


@pytest.mark.xfail(
    strict=True,
    reason="decord seeks to wrong frames in AVI files with several "
    "keyframes (dmlc/decord#195, #252); use backend='pyav' for such files",
)
def test_decord_random_access_on_multi_keyframe_avi(synthetic: dict[str, Path]) -> None:
    with open_video(synthetic["mpeg4_closed.avi"], "decord") as reader:
        assert _frame_numbers(reader.get_frames([30, 13, 45])) == [30, 13, 45]


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_and_closed(mm: Path, backend: str) -> None:
    path = mm / "rawvideo_part_0.mp4"
    reader = open_video(path, backend)
    for bad in ([32], [-1], [0, 5, 40]):
        with pytest.raises(VideoReadError, match="out of range") as info:
            reader.get_frames(bad)
        assert info.value.path == path and str(info.value).startswith(str(path))
    reader.close()
    with pytest.raises(VideoReadError, match="closed"):
        reader.get_frames([0])


def _bad_file(kind: str, folder: Path, mm: Path) -> Path:
    """A file in ``folder`` that no decoder can fully read."""
    if kind == "missing":
        return folder / "missing.mp4"
    if kind == "directory":
        (folder / "dir.mp4").mkdir()
        return folder / "dir.mp4"
    content = {
        "empty": b"",
        "random": np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
        "text": b"path,label\nnot a video at all\n",
        "truncated": (mm / "test.mp4").read_bytes()[: int(0.3 * (mm / "test.mp4").stat().st_size)],
    }[kind]
    path = folder / {"text": "bad.avi"}.get(kind, f"{kind}.mp4")
    path.write_bytes(content)
    return path


@pytest.mark.timeout(20)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "random", "text", "truncated"])
def test_unreadable_files_raise_video_read_error(
    mm: Path, tmp_path: Path, backend: str, kind: str
) -> None:
    path = _bad_file(kind, tmp_path, mm)
    with pytest.raises(VideoReadError) as info:
        with open_video(path, backend) as reader:  # may open (truncated): late frames must fail
            reader.get_frames([0, reader.num_frames // 2, reader.num_frames - 1, 299])
    assert info.value.path == path and str(info.value) == f"{path}: {info.value.reason}"
    assert info.value.reason and "\n" not in info.value.reason


def _remux_faststart(source: Path, target: Path) -> Path:
    """Copy ``source``'s video packets into an MP4 with the index first (readable when cut)."""
    av = pytest.importorskip("av")
    with (
        av.open(str(source)) as src,
        av.open(str(target), "w", options={"movflags": "faststart"}) as dst,
    ):
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return target


@pytest.mark.timeout(20)
@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_and_corrupt_streams_fail_in_get_frames(
    mm: Path, tmp_path: Path, backend: str
) -> None:
    """Files that open fine but break mid-stream: early frames decode, late ones raise."""
    data = _remux_faststart(mm / "test.mp4", tmp_path / "fast.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(0.3 * len(data))])
    zeroed = bytearray(data)
    zeroed[len(data) // 2 : len(data) // 2 + 20_000] = bytes(20_000)
    (tmp_path / "zeroed.mp4").write_bytes(bytes(zeroed))
    for name in ("cut.mp4", "zeroed.mp4"):
        with open_video(tmp_path / name, backend) as reader:
            assert reader.get_frames([0, 1, 2]).shape == (3, 256, 340, 3)
            with pytest.raises(VideoReadError, match="decod") as info:
                reader.get_frames(range(reader.num_frames))
            assert info.value.path == tmp_path / name


def test_truncated_avi_counts_only_present_frames(mm: Path, tmp_path: Path) -> None:
    data = (mm / "test.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(0.3 * len(data))])
    counts = []
    for backend in BACKENDS:
        with open_video(tmp_path / "cut.avi", backend) as reader:
            counts.append(reader.num_frames)
            assert reader.get_frames([reader.num_frames - 1]).shape == (1, 240, 320, 3)
    assert counts[0] == counts[1] and 0 < counts[0] < 164


@pytest.mark.parametrize("backend", BACKENDS)
def test_audio_only_file(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "sound.wav"
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1), sound.setsampwidth(2), sound.setframerate(8000)
        sound.writeframes(np.zeros(8000, dtype=np.int16).tobytes())
    with pytest.raises(VideoReadError) as info:
        open_video(path, backend)
    assert info.value.path == path


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_sizes_never_give_wrong_shapes(tmp_path: Path, backend: str) -> None:
    """decord mis-shapes some sizes (e.g. 96x64 as 4 channels): an error, never bad frames."""
    path = _encode_numbered(tmp_path / "small.mp4", "libx264", n=12, width=96)
    with open_video(path, backend) as reader:
        try:
            frames = reader.get_frames([3, 7])
        except VideoReadError:
            assert backend == "decord"
        else:
            assert frames.shape == (2, 64, 96, 3) and _frame_numbers(frames) == [3, 7]


def test_misc_api() -> None:
    assert available_backends() == ["decord", "pyav"]
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video("x.mp4", "opencv")  # type: ignore[arg-type]
    err = pickle.loads(pickle.dumps(VideoReadError(Path("a/b.mp4"), "empty file")))
    assert (err.path, err.reason) == (Path("a/b.mp4"), "empty file")
    assert str(err) == "a/b.mp4: empty file"


def test_backends_are_not_imported_at_module_level() -> None:
    """decord/av load inside open_video only, so importing the module opens and starts nothing."""
    import ssvrl.data.video_reader as module

    tree = ast.parse(Path(module.__file__).read_text())
    top = [
        alias.name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ] + [node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert "torch" in top and not {"av", "decord"} & {name.split(".")[0] for name in top}
    assert not any("_backend" in name for name in top)
