"""Frame folders as videos: mmaction2's real img_/x_/y_ JPEGs through FrameFolderReader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg, read_file

from ssvrl.data._frames_backend import FrameFolderReader
from ssvrl.data.video_reader import VideoReadError, available_backends, open_video, output_size


@pytest.fixture(scope="module")
def imgs(shared_data: Path) -> Path:
    return shared_data / "mmaction2" / "imgs"


@pytest.fixture
def copy(imgs: Path, tmp_path: Path) -> Path:
    """A writable copy of the real frame folder."""
    return Path(shutil.copytree(imgs, tmp_path / "clip"))


def _torchvision_frame(file: Path) -> torch.Tensor:
    """An independent decode (libjpeg-turbo via torchvision) as (H, W, 3) uint8."""
    return decode_jpeg(read_file(str(file))).permute(1, 2, 0)


def test_real_frame_folder_geometry_and_pixels(imgs: Path) -> None:
    with FrameFolderReader(imgs) as reader:
        assert (reader.num_frames, reader.num_flow_frames) == (10, 5)
        assert reader.size == (240, 320) and reader.fps == 30.0
        frames = reader.get_frames([9, 0, 0, 4])
    assert frames.shape == (4, 240, 320, 3) and frames.dtype == torch.uint8
    for got, number in zip(frames, (10, 1, 1, 5), strict=True):
        want = _torchvision_frame(imgs / f"img_{number:05d}.jpg")
        assert (got.int() - want.int()).abs().max() <= 2  # two JPEG decoders agree
    assert not torch.equal(frames[0], frames[1])  # order kept: frame 9 is not frame 0
    assert torch.equal(frames[1], frames[2])


@pytest.mark.parametrize("short_side", [64, 120, 480])
def test_resize_follows_output_size_rule(imgs: Path, short_side: int) -> None:
    with FrameFolderReader(imgs, short_side=short_side) as reader:
        assert reader.size == output_size(240, 320, short_side)
        frame = reader.get_frames([3])[0]
    assert frame.shape == (*reader.size, 3)
    reference = Image.open(imgs / "img_00004.jpg").convert("RGB")
    reference = reference.resize(reader.size[::-1], Image.Resampling.BICUBIC)
    assert np.array_equal(frame.numpy(), np.asarray(reference))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_open_video_dispatches_directories(imgs: Path, backend: str) -> None:
    if backend not in available_backends():
        pytest.skip(f"{backend} not installed")
    with open_video(imgs, backend, short_side=96, frame_fps=12.5) as reader:  # type: ignore[arg-type]
        assert isinstance(reader, FrameFolderReader)
        assert (reader.fps, reader.size, reader.num_frames) == (12.5, (96, 128), 10)
        assert reader.frame_times()[1] == pytest.approx(1 / 12.5)


def test_custom_template_start_and_fps(copy: Path) -> None:
    for number in range(1, 11):
        (copy / f"img_{number:05d}.jpg").rename(copy / f"frame{number - 1:04d}.jpg")
    with pytest.raises(VideoReadError, match="no frames"):
        FrameFolderReader(copy)
    reader = FrameFolderReader(copy, template="frame{:04d}.jpg", start_index=0, fps=25)
    assert reader.num_frames == 10 and reader.fps == 25.0
    with pytest.raises(ValueError, match="fps"):
        FrameFolderReader(copy, fps=0)
    with pytest.raises(ValueError, match="template"):
        FrameFolderReader(copy, template="frame{}{}.jpg")


def test_gap_ends_the_frame_run(copy: Path) -> None:
    (copy / "img_00007.jpg").unlink()
    with FrameFolderReader(copy) as reader:
        assert reader.num_frames == 6
        with pytest.raises(VideoReadError, match="frame index 6 out of range"):
            reader.get_frames([5, 6])


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no frames") as info:
        open_video(tmp_path / "empty", "pyav")
    assert info.value.path == tmp_path / "empty"
    with pytest.raises(VideoReadError, match="cannot list"):
        FrameFolderReader(tmp_path / "absent")


def test_corrupt_and_foreign_frames(copy: Path) -> None:
    data = (copy / "img_00003.jpg").read_bytes()
    (copy / "img_00003.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (copy / "img_00005.jpg").write_bytes(b"not a jpeg at all")
    Image.new("RGB", (320, 240)).save(copy / "img_00006.jpg", format="PNG")  # PNG named .jpg
    Image.new("RGB", (160, 120)).save(copy / "img_00008.jpg", format="JPEG")
    with FrameFolderReader(copy) as reader:
        assert reader.get_frames([0, 1, 3]).shape[0] == 3  # intact frames still decode
        for index, reason in [
            (2, "cannot decode img_00003.jpg"),
            (4, "cannot decode img_00005.jpg"),
            (5, "img_00006.jpg is not a JPEG"),
            (7, "img_00008.jpg is 160x120, the first frame 320x240"),
        ]:
            with pytest.raises(VideoReadError, match=reason) as info:
                reader.get_frames([0, index])
            assert info.value.path == copy
    (copy / "img_00001.jpg").write_bytes(b"")
    with pytest.raises(VideoReadError, match="cannot read img_00001.jpg"):
        FrameFolderReader(copy)


def test_closed_reader_refuses(imgs: Path) -> None:
    reader = FrameFolderReader(imgs)
    reader.close()
    with pytest.raises(VideoReadError, match="closed"):
        reader.get_frames([0])
    with pytest.raises(VideoReadError, match="closed"):
        reader.get_flow([0])


def test_flow_scale_and_centre(imgs: Path) -> None:
    with FrameFolderReader(imgs) as reader:
        flow = reader.get_flow([4, 0])
    assert flow.shape == (2, 2, 240, 320) and flow.dtype == torch.float32
    for slot, number in enumerate((5, 1)):
        for axis, name in enumerate("xy"):
            raw = np.asarray(Image.open(imgs / f"{name}_{number:05d}.jpg"), dtype=np.float32)
            assert np.allclose(flow[slot, axis].numpy(), (raw - 127.5) / 127.5 * 20, atol=1e-5)
    assert flow.abs().max() <= 20 and flow.std() > 0


def test_flow_reads_back_denseflow_quantisation_and_resize_scales_vectors(tmp_path: Path) -> None:
    """denseflow writes ``(f + b) * 255 / (2 b)``: 0 and 255 are -b and +b exactly, and reading
    agrees with ``flow_from_uint8`` (the motion maps' dequantiser)."""
    from ssvrl.augment.motion import flow_from_uint8

    Image.new("RGB", (200, 100)).save(tmp_path / "img_00001.jpg", quality=100)
    Image.new("L", (200, 100), 0).save(tmp_path / "x_00001.jpg", quality=100)
    Image.new("L", (200, 100), 255).save(tmp_path / "y_00001.jpg", quality=100)
    with FrameFolderReader(tmp_path, flow_bound=16.0) as reader:
        flow = reader.get_flow([0])
        assert torch.allclose(flow[0, 0], torch.tensor(-16.0), atol=1e-4)
        assert torch.allclose(flow[0, 1], torch.tensor(16.0), atol=1e-4)
        x = torch.zeros(1, 100, 200, dtype=torch.uint8)
        assert torch.allclose(flow, flow_from_uint8(x, x + 255, bound=16.0), atol=1e-4)
    with FrameFolderReader(tmp_path, short_side=50) as reader:  # half size: vectors halve
        flow = reader.get_flow([0])
        assert flow.shape == (1, 2, 50, 100)
        assert torch.allclose(flow[0, 0], torch.tensor(-10.0), atol=1e-4)  # -20 px * 0.5
        assert torch.allclose(flow[0, 1], torch.tensor(10.0), atol=1e-4)
        with pytest.raises(VideoReadError, match="flow index 1 out of range"):
            reader.get_flow([1])
