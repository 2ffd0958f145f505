"""The two tables of a report, `videos/` (one row per video and run) and `faces/` (one row
per scored face), and how a scored row of the pipeline becomes their rows."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from pipeline.extract import FACE_META_COLUMNS, unpack_face_meta

TIMESTAMP = pa.timestamp("us", tz="UTC")


VIDEOS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | no_face | error | missing
        pa.field("error", pa.string()),  # why, when status is error
        pa.field("fake_score", pa.float64()),  # 0..1, null unless status is ok
        pa.field("label", pa.string()),  # fake | real, null unless status is ok
        pa.field("frames_sampled", pa.int32()),
        pa.field("frames_with_face", pa.int32()),
        pa.field("faces_scored", pa.int32()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("size_bytes", pa.int64()),
        pa.field("modified_at", TIMESTAMP),
        pa.field("fingerprint", pa.string()),  # size, mtime and a content sample, hashed
        pa.field("model_id", pa.string()),  # content hash of the checkpoint that scored it
        pa.field("settings", pa.string()),  # the scan settings the result depends on
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("scanned_at", TIMESTAMP, nullable=False),
    ]
)


FACES_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("timestamp_s", pa.float64()),
        pa.field("face_index", pa.int32(), nullable=False),  # 0 = largest face in its frame
        pa.field("x", pa.int32(), nullable=False),  # box in full-frame pixels
        pa.field("y", pa.int32(), nullable=False),
        pa.field("w", pa.int32(), nullable=False),
        pa.field("h", pa.int32(), nullable=False),
        pa.field("fake_score", pa.float32(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)


def _none_if_nan(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _timestamp(epoch_s) -> datetime | None:
    epoch_s = _none_if_nan(epoch_s)
    return None if epoch_s is None else datetime.fromtimestamp(float(epoch_s), tz=UTC)


def video_record(row: dict, run_id: str, scanned_at: datetime, settings: str = "") -> dict:
    """A scored row from the pipeline -> one row of the videos table."""
    return {
        "path": str(row["path"]),
        "status": str(row["status"]),
        "error": str(row["error"]) or None,
        "fake_score": _none_if_nan(float(row["fake_score"])),
        "label": str(row["label"]) or None,
        "frames_sampled": int(row["frames_sampled"]),
        "frames_with_face": int(row["frames_with_face"]),
        "faces_scored": int(row["faces_scored"]),
        "duration_s": _none_if_nan(float(row["duration_s"])),
        "fps": _none_if_nan(float(row["fps"])),
        "width": int(row["width"]) or None,
        "height": int(row["height"]) or None,
        "size_bytes": int(row["size_bytes"]),
        "modified_at": _timestamp(row["modified_at"]),
        "fingerprint": str(row["fingerprint"]) or None,
        "model_id": str(row["model_id"]) or None,
        "settings": settings or None,
        "run_id": run_id,
        "scanned_at": scanned_at,
    }


def face_columns(row: dict, run_id: str) -> dict[str, np.ndarray]:
    """A scored row -> its faces, as columns of the faces table."""
    meta = unpack_face_meta(row["face_meta"])
    scores = np.frombuffer(row["face_scores"], np.float32)
    if len(meta) != len(scores):
        raise ValueError(f"{row['path']}: {len(meta)} faces but {len(scores)} scores")
    cols = {name: meta[:, i] for i, name in enumerate(FACE_META_COLUMNS)}
    out = {"path": np.full(len(meta), str(row["path"]), dtype=object)}
    for field in FACES_SCHEMA:
        if field.name in cols:
            out[field.name] = cols[field.name].astype(field.type.to_pandas_dtype())
    out["fake_score"] = scores
    out["run_id"] = np.full(len(meta), run_id, dtype=object)
    return out
