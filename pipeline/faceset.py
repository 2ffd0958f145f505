"""Face sets for training: labelled videos -> face crops on disk plus a Parquet manifest.

Crops come from exactly the scan's code (pipeline.extract) and settings, so a model trained on
them sees faces as the scan will show them. Crops are PNG (lossless: JPEG would add its own
artefacts before augmentation decides on any). With a validation fraction, whole videos go to
one split, never frames of one video to both, which would leak identities into validation.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os

import cv2
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import VIDEO_EXTENSIONS, Preprocess
from pipeline.discover import find_videos
from pipeline.extract import unpack_crops, unpack_face_meta

LABELS = ("real", "fake")

MANIFEST_SCHEMA = pa.schema(
    [
        ("image", pa.string()),  # relative to the face set folder
        ("label", pa.string()),
        ("split", pa.string()),  # train | val | "" without a split
        ("video", pa.string()),
        ("frame_index", pa.int32()),
        ("face_index", pa.int32()),
        ("x", pa.int32()),
        ("y", pa.int32()),
        ("w", pa.int32()),
        ("h", pa.int32()),
    ]
)


def labelled_videos(
    video_dir: str, labels_csv: str | None = None, extensions=VIDEO_EXTENSIONS
) -> list[tuple[str, str]]:
    """(absolute path, label) from a real/ and fake/ folder layout, or from a CSV with columns
    path,label (paths relative to the CSV's folder or absolute; labels real/fake or 0/1)."""
    if labels_csv is None:
        out = []
        for label in LABELS:
            folder = os.path.join(video_dir, label)
            if os.path.isdir(folder):
                out += [(p, label) for p in find_videos(folder, extensions)]
        if not out:
            raise FileNotFoundError(f"no videos under {video_dir}/real or {video_dir}/fake")
        return out
    base = os.path.dirname(os.path.abspath(labels_csv))
    out = []
    with open(labels_csv, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            label = {"0": "real", "1": "fake"}.get(row.get("label", "").strip(), row["label"])
            label = label.strip().lower()
            if label not in LABELS:
                raise ValueError(f"{labels_csv}:{n}: label must be real, fake, 0 or 1")
            path = row["path"].strip()
            out.append((os.path.normpath(os.path.join(base, path)), label))
    return out


def split_of(path: str, val_fraction: float) -> str:
    """A stable split by video: the same file always lands in the same split."""
    if val_fraction <= 0:
        return ""
    h = int(hashlib.sha1(path.encode("utf-8", "backslashreplace")).hexdigest()[:8], 16)
    return "val" if h / 0xFFFFFFFF < val_fraction else "train"


class FaceSetWriter:
    def __init__(self, out_dir: str, preprocess: Preprocess, val_fraction: float = 0.0):
        self.out_dir = out_dir
        self.preprocess = preprocess
        self.val_fraction = val_fraction
        self.rows: list[dict] = []
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "preprocess.json"), "w") as f:
            json.dump(preprocess.to_dict(), f, indent=2)

    def add(self, row: dict, label: str) -> int:
        """Write the crops of one extracted video; returns how many."""
        crops = unpack_crops(row["crops"], int(row["crop_size"]) or self.preprocess.input_size)
        meta = unpack_face_meta(row["face_meta"])
        video = str(row["path"])
        split = split_of(video, self.val_fraction)
        folder = os.path.join(self.out_dir, split, label)
        os.makedirs(folder, exist_ok=True)
        stem = os.path.splitext(os.path.basename(video))[0][:60]
        tag = hashlib.sha1(video.encode("utf-8", "backslashreplace")).hexdigest()[:8]
        for crop, m in zip(crops, meta, strict=True):
            frame, face = int(m[0]), int(m[2])
            name = f"{stem}-{tag}_f{frame:06d}_{face}.png"
            cv2.imwrite(os.path.join(folder, name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            self.rows.append(
                {
                    "image": os.path.join(split, label, name),
                    "label": label,
                    "split": split,
                    "video": video,
                    "frame_index": frame,
                    "face_index": face,
                    "x": int(m[3]),
                    "y": int(m[4]),
                    "w": int(m[5]),
                    "h": int(m[6]),
                }
            )
        return len(crops)

    def close(self) -> str:
        path = os.path.join(self.out_dir, "manifest.parquet")
        tmp = os.path.join(self.out_dir, ".manifest.parquet.tmp")
        pq.write_table(pa.Table.from_pylist(self.rows, schema=MANIFEST_SCHEMA), tmp)
        os.replace(tmp, path)
        return path
