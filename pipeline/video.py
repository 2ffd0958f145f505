"""Open videos and sample frames from them with OpenCV.

Containers lie: the frame count may be missing (0 or negative), estimated from the duration
(too high or too low), or wrong because the file is truncated. Sampling copes with all three and
decodes little further than the last frame it needs (to check that the video ends where its
container says); far-apart frames are reached by seeking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.container import diagnose

# Between two wanted frames closer than this, grabbing (decoding without converting) is cheaper
# than a seek, which decodes from the previous keyframe anyway.
SEEK_GAP = 96


class VideoError(Exception):
    """A video that cannot be decoded; the message says why, for the report's `error` column."""


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int  # as the container reports it; may be wrong, see module doc
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        if self.fps > 0 and self.frame_count > 0:
            return self.frame_count / self.fps
        return math.nan


def open_video(path: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        why = diagnose(path)
        if why:
            raise VideoError(f"cannot open as a video: {why}")
        raise VideoError("cannot open as a video (damaged, or a codec this OpenCV lacks)")
    # Frames as shown, not as stored: phones store portrait clips sideways plus a rotation.
    # OpenCV's default, said here so that no other default can take it away.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def probe(cap: cv2.VideoCapture) -> VideoInfo:
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    fps = cap.get(cv2.CAP_PROP_FPS)
    return VideoInfo(
        frame_count=int(count) if math.isfinite(count) and count > 0 else 0,
        fps=float(fps) if math.isfinite(fps) and 0 < fps < 1000 else 0.0,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )


def sample_indices(frame_count: int, n: int) -> list[int]:
    """`n` frame indices spread evenly over `frame_count` frames: the middle of each of `n`
    equal segments, so the first and last frames (often black or a fade) are avoided."""
    if frame_count <= 0 or n <= 0:
        return []
    if frame_count <= n:
        return list(range(frame_count))
    return sorted({int((i + 0.5) * frame_count / n) for i in range(n)})


def count_frames(open_capture: Callable[[], cv2.VideoCapture]) -> int:
    """Count the frames that really decode, for containers whose count is missing or wrong."""
    cap = open_capture()
    try:
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def _read_targets(
    cap: cv2.VideoCapture, targets: list[int], pos: int = 0, seek_limit: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, BGR frame) for each target in ascending order; stop at the first failure.
    `pos` is the index of the frame the capture would return next. Seeks stay below
    `seek_limit`, the container's frame count: OpenCV's FFmpeg backend silently caps a seek
    there (and says it succeeded), so frames past it are reached by grabbing."""
    for t in targets:
        dest = t if seek_limit is None else min(t, seek_limit - 1)
        if dest - pos > SEEK_GAP and cap.set(cv2.CAP_PROP_POS_FRAMES, dest):
            pos = dest
        while pos < t:
            if not cap.grab():
                return
            pos += 1
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        pos += 1
        yield t, frame


def sample_frames(
    open_capture: Callable[[], cv2.VideoCapture],
    n: int,
    reported_count: int,
    on_count: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield up to `n` (frame_index, BGR frame) pairs spread over the video, in ascending order.

    `open_capture` opens a fresh capture (a second pass is needed when the reported count turns
    out to be wrong). Frames are yielded one at a time so that a 4K video never holds more than
    one decoded frame in memory. When the video turns out to be longer than its container said,
    up to `n` more frames are yielded, spread over the part it did not mention. Whenever the
    frames were counted (the container's count was missing or wrong), `on_count` hears the count.
    """
    on_count = on_count or (lambda _count: None)
    count = reported_count if reported_count > 0 else count_frames(open_capture)
    if reported_count <= 0:
        on_count(count)
    targets = sample_indices(count, n)
    done: set[int] = set()
    beyond = 0  # frames found after the reported end
    cap = open_capture()
    try:
        for index, frame in _read_targets(cap, targets):
            done.add(index)
            yield index, frame
        if reported_count > 0 and len(done) == len(targets):
            beyond = _frames_beyond(cap, max(done, default=-1) + 1, count, n)
    finally:
        cap.release()
    if beyond:
        on_count(count + beyond)
        # The container said too few (a duration-based estimate, variable frame rate): sample
        # the rest at the same spacing, at most `n` more, so the end of the video is looked at.
        extra = min(n, max(1, round(n * beyond / count)))
        extra_targets = [count + i for i in sample_indices(beyond, extra)]
        yield from _read_fresh(open_capture, extra_targets, seek_limit=count)
        return
    if len(done) == len(targets):
        return
    # The container promised frames that are not there (truncated file, estimated count):
    # count what really decodes and spread the frames still owed over the part after the last
    # frame yielded, so that the whole video is covered by at most `n` frames.
    start = max(done, default=-1) + 1
    real_count = count_frames(open_capture)
    on_count(real_count)
    rest = real_count - start
    retry = [start + i for i in sample_indices(rest, n - len(done))]
    if retry:
        yield from _read_fresh(open_capture, retry)


def read_frame(path: str, index: int) -> np.ndarray | None:
    """Frame `index` of a video (BGR), reached the way sampling reaches it (so it is the frame
    the scan sampled under that index); None when the file cannot be opened or has no such
    frame."""
    try:
        return next((frame for _, frame in _read_fresh(lambda: open_video(path), [index])), None)
    except VideoError:
        return None


def _read_fresh(
    open_capture: Callable[[], cv2.VideoCapture], targets: list[int], seek_limit: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """_read_targets on a capture opened for it, released however the reading ends."""
    cap = open_capture()
    try:
        yield from _read_targets(cap, targets, seek_limit=seek_limit)
    finally:
        cap.release()


def _frames_beyond(cap: cv2.VideoCapture, pos: int, count: int, n: int) -> int:
    """How many frames decode after frame `count - 1` (the reported end), for a capture whose
    next frame is `pos`; 0 when there are none or fewer than half a sampling gap (a count off by
    a frame or two is common and changes nothing). Costs about half a gap of grabbing (on a long
    video, one seek to the last reported frame) when the count is right, and a pass to the end
    when it is not."""
    probe_at = count + count // (2 * n)
    if not any(True for _ in _read_targets(cap, [probe_at], pos, seek_limit=count)):
        return 0
    extra = probe_at + 1 - count
    while cap.grab():
        extra += 1
    return extra
