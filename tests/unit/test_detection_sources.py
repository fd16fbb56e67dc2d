"""Frame sources on real files through OpenCV: bad input is a status, never a crash."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from producers.sources import (
    END,
    ERROR,
    OK,
    ImageFilesSource,
    VideoFileSource,
    decode_jpeg,
    open_source,
)


def jpeg(value: int) -> bytes:
    return cv2.imencode(".jpg", np.full((240, 320, 3), value, np.uint8))[1].tobytes()


def write_video(path: Path, n: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((240, 320, 3), 10 * i, np.uint8))
    writer.release()
    return path


def test_truncated_jpeg_is_an_error_naming_where() -> None:
    data = jpeg(100)
    assert decode_jpeg(data, "x.jpg").status == OK
    cut = decode_jpeg(data[: len(data) // 2], "cam3/0007.jpg")
    assert cut.status == ERROR and cut.frame is None
    assert "cam3/0007.jpg" in (cut.detail or "") and "truncated" in (cut.detail or "")
    garbage = decode_jpeg(b"\x00not an image", "g.jpg")
    assert garbage.status == ERROR and "not a decodable image" in (garbage.detail or "")


def test_image_folder_reports_the_corrupt_file_and_carries_on(tmp_path: Path) -> None:
    for i in range(4):
        data = jpeg(40 * i)
        (tmp_path / f"{i:04d}.jpg").write_bytes(data[:100] if i == 1 else data)
    source = ImageFilesSource.folder(tmp_path)
    reads = [source.read() for _ in range(5)]
    assert [r.status for r in reads] == [OK, ERROR, OK, OK, END]
    assert "0001.jpg" in (reads[1].detail or "")
    assert reads[2].frame is not None and int(reads[2].frame.mean()) == pytest.approx(80, abs=2)


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no"):
        ImageFilesSource.folder(tmp_path)


def test_video_file_frames_then_end(tmp_path: Path) -> None:
    source = VideoFileSource(write_video(tmp_path / "v.avi", 6))
    reads = [source.read() for _ in range(8)]
    assert [r.status for r in reads] == [OK] * 6 + [END, END]
    assert all(r.frame is not None and r.frame.shape == (240, 320, 3) for r in reads[:6])


@pytest.mark.parametrize("content", [None, b"\x00" * 5000])
def test_unreadable_video_is_one_error_then_end(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken.avi"
    if content is not None:
        path.write_bytes(content)
    source = open_source(str(path))
    first, second = source.read(), source.read()
    assert first.status == ERROR and "broken.avi" in (first.detail or "")
    assert second.status == END


def test_open_source_picks_by_spec(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg(1))
    (tmp_path / "b.jpg").write_bytes(jpeg(2))
    assert isinstance(open_source(str(tmp_path)), ImageFilesSource)
    globbed = open_source(str(tmp_path / "*.jpg"))
    assert isinstance(globbed, ImageFilesSource) and len(globbed.paths) == 2
    assert isinstance(open_source(str(tmp_path / "a.jpg")), ImageFilesSource)
    with pytest.raises(FileNotFoundError, match="no files match"):
        open_source(str(tmp_path / "*.png"))
