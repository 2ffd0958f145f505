"""The CPU stage of a scan: one video reference in, one row out.

The row holds the video's metadata and all its face crops as one uint8 array (N x S x S x 3,
flattened to bytes so that every row has the same Arrow types), with a float array of
(frame_index, timestamp_s, face_index, x, y, w, h) per crop. A video that fails becomes a row
with status `error` and the reason; it is never dropped and never given a score.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from pipeline.config import Preprocess
from pipeline.faces import FaceTracker, make_detector
from pipeline.video import VideoError, open_video, probe, sample_frames

FACE_META_COLUMNS = ("frame_index", "timestamp_s", "face_index", "x", "y", "w", "h")

STATUS_OK = "ok"
STATUS_NO_FACE = "no_face"
STATUS_ERROR = "error"


def empty_row(ref: dict) -> dict:
    """A row with the types every row has, filled with 'nothing known yet'."""
    return {
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
) -> dict:
    """Sample `frames` frames of the video at `ref["path"]`, detect and crop faces."""
    row = empty_row(ref)
    if row["error"]:
        return row
    if row["size_bytes"] == 0:
        row["error"] = "empty file (0 bytes)"
        return row
    try:
        detector = detector or make_detector(preprocess)
        return _extract(row, preprocess, frames, max_faces, detector, open_capture)
    except VideoError as exc:
        row["error"] = str(exc)
    except (cv2.error, MemoryError, OSError, ValueError) as exc:
        # One bad file must not stop the scan; the reason goes into the report instead.
        row["error"] = f"{type(exc).__name__}: {exc}".strip()
    row.update(status=STATUS_ERROR, crops=b"", face_meta=b"", crop_size=0)
    return row


def _extract(row, preprocess, frames, max_faces, detector, open_capture) -> dict:
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
    crops: list[np.ndarray] = []
    meta: list[tuple] = []
    sampled = with_face = 0
    tracker = FaceTracker(detector, preprocess, max_faces)

    def counted(frame_count: int) -> None:  # the container's count was missing or wrong
        if info.fps > 0:
            row["duration_s"] = frame_count / info.fps

    sampled_frames = sample_frames(lambda: open_capture(path), frames, info.frame_count, counted)
    for index, frame in sampled_frames:
        sampled += 1
        faces = tracker.faces(frame)
        if faces:
            with_face += 1
        ts = index / info.fps if info.fps > 0 else math.nan
        for k, face in enumerate(faces):
            b = face.box
            crops.append(face.crop)
            meta.append((index, ts, k, b.x, b.y, b.w, b.h))
    if sampled == 0:
        raise VideoError("no frame could be decoded")
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
