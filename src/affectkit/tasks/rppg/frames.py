"""Frame sources, read one frame at a time so memory never holds a whole video: video files
(OpenCV), image folders (PURE), arrays (MMPD's .mat), a camera index and an MJPEG stream on stdin.

Every source yields RGB uint8 frames ``[H, W, 3]`` and knows its frame rate."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from affectkit.core.errors import DataError, UsageError


def _cv2():
    try:
        import cv2
    except ImportError:
        raise UsageError("reading video needs OpenCV", "pip install 'opencv-python-headless<5'") from None
    return cv2


@dataclass
class FrameSource:
    """``frames()`` opens the source afresh each call. ``n_frames`` is what the container declares
    (0: unknown, e.g. a stream); ``name`` labels errors and rows."""

    name: str
    fps: float
    n_frames: int
    _open: Callable[[], Iterator[np.ndarray]]

    def frames(self) -> Iterator[np.ndarray]:
        return self._open()


def open_video(path: str | Path, fps: float | None = None) -> FrameSource:
    """A video file. ``fps`` overrides the container's rate (needed when it is missing or wrong).
    Raises DataError naming the file when it is missing, cannot be opened or decodes no frame; a
    video that stops early (truncated) yields the frames it has, and the caller checks the count."""
    from affectkit.components.video import open_capture

    cv2 = _cv2()
    p = Path(path)
    cap = open_capture(p)
    ok, first = cap.read()
    declared_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    declared_n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    if not ok or first is None:
        raise DataError(p, "no frame could be decoded (corrupt, truncated or empty video)")
    rate = fps or declared_fps
    if not rate or not np.isfinite(rate) or rate <= 0 or rate > 1000:
        raise DataError(p, f"the video declares no usable frame rate ({declared_fps})", "pass --fps")

    return FrameSource(str(p), float(rate), max(declared_n, 0), lambda: _capture_frames(str(p)))


def _capture_frames(target: str | int) -> Iterator[np.ndarray]:
    """RGB frames of an OpenCV capture (a file path or a camera index) until it stops."""
    cap = _cv2().VideoCapture(target)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield np.ascontiguousarray(frame[:, :, ::-1])
    finally:
        cap.release()


def open_images(paths: list[Path], fps: float, name: str) -> FrameSource:
    """An ordered list of image files (PURE's PNG frames)."""
    if not paths:
        raise DataError(name, "no image frames found")

    def frames() -> Iterator[np.ndarray]:
        cv2 = _cv2()
        for p in paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(p, "cannot read image frame (corrupt or not an image)")
            yield np.ascontiguousarray(img[:, :, ::-1])

    return FrameSource(name, fps, len(paths), frames)


def open_array(load: Callable[[], np.ndarray], fps: float, n_frames: int, name: str) -> FrameSource:
    """Frames held in an array ``[T, H, W, 3]`` (MMPD's .mat ``video``), loaded when iterated;
    float arrays in [0, 1] are scaled to uint8."""

    def frames() -> Iterator[np.ndarray]:
        video = load()
        if video.ndim != 4 or video.shape[-1] != 3:
            raise DataError(name, f"expected a T x H x W x 3 video array, got shape {tuple(video.shape)}")
        scale = 255.0 if video.dtype.kind == "f" and float(np.nanmax(video[: min(len(video), 8)])) <= 1.0 else 1.0
        for frame in video:
            yield frame.astype(np.uint8) if scale == 1.0 else np.clip(frame * scale, 0, 255).astype(np.uint8)

    return FrameSource(name, fps, n_frames, frames)


def _mjpeg_frames(stream: BinaryIO, chunk: int = 1 << 16) -> Iterator[np.ndarray]:
    """Split a byte stream of concatenated JPEG images (``ffmpeg -f mjpeg -``) into decoded frames."""
    cv2 = _cv2()
    buf = b""
    while True:
        data = stream.read(chunk)
        if not data:
            return
        buf += data
        while True:
            start = buf.find(b"\xff\xd8")
            end = buf.find(b"\xff\xd9", start + 2) if start >= 0 else -1
            if start < 0 or end < 0:
                break
            jpeg, buf = buf[start : end + 2], buf[end + 2 :]
            img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if img is not None:
                yield np.ascontiguousarray(img[:, :, ::-1])


def open_stream(spec: str, fps: float | None) -> FrameSource:
    """``-``: an MJPEG stream on stdin; a bare integer: that camera index; otherwise a video file."""
    if spec == "-":
        if not fps:
            raise UsageError("--fps is required when frames come from stdin")
        return FrameSource("<stdin>", float(fps), 0, lambda: _mjpeg_frames(sys.stdin.buffer))
    if spec.isdigit():
        cv2 = _cv2()
        index = int(spec)
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            raise DataError(f"camera {index}", "cannot open this camera index")
        rate = fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        cap.release()
        return FrameSource(f"camera {index}", rate, 0, lambda: _capture_frames(index))
    return open_video(spec, fps)
