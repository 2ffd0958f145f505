"""Face sets for training: labelled videos -> face crops on disk plus a Parquet manifest.

Crops come from exactly the scan's code (pipeline.extract) and settings, so a model trained on
them sees faces as the scan will show them. Crops are PNG (lossless: JPEG would add its own
artefacts before augmentation decides on any). With a validation fraction, whole videos go to
one split, never frames of one video to both, which would leak identities into validation.

A face set folder holds one extraction, described by its manifest: extracting into it again
either replaces that extraction (its crops are removed first) or adds to it (videos extracted
again replace their own crops), so stale crops never stay behind to be trained on.
"""

from __future__ import annotations

import contextlib
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
    # utf-8-sig: spreadsheet programs start their CSVs with a byte-order mark.
    with open(labels_csv, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"path", "label"} <= set(reader.fieldnames or ()):
            raise ValueError(
                f"{labels_csv}: needs a header row with columns path,label; "
                f"found {', '.join(reader.fieldnames or ()) or 'none'}"
            )
        for n, row in enumerate(reader, start=2):
            label = {"0": "real", "1": "fake"}.get(row.get("label", "").strip(), row["label"])
            label = label.strip().lower()
            if label not in LABELS:
                raise ValueError(f"{labels_csv}:{n}: label must be real, fake, 0 or 1")
            path = row["path"].strip()
            out.append((os.path.normpath(os.path.join(base, path)), label))
    return out


def split_of(key: str, val_fraction: float) -> str:
    """A stable split by video: the same key always lands in the same split. The key is the
    video's path relative to its clips folder (or labels CSV), so that moving the folder and
    extracting again keeps every video in its split."""
    if val_fraction <= 0:
        return ""
    h = int(hashlib.sha1(key.encode("utf-8", "backslashreplace")).hexdigest()[:8], 16)
    return "val" if h / 0xFFFFFFFF < val_fraction else "train"


MODES = ("new", "replace", "add")


class FaceSetWriter:
    """Writes one extraction into `out_dir`. mode `new` refuses a folder that already holds a
    face set (a manifest); `replace` removes that set's crops first; `add` keeps them, with
    the same preprocessing only, and a video extracted again replaces its own crops."""

    def __init__(
        self, out_dir: str, preprocess: Preprocess, val_fraction: float = 0.0, mode: str = "new"
    ):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        self.out_dir = out_dir
        self.preprocess = preprocess
        self.val_fraction = val_fraction
        self.rows: list[dict] = []
        self.kept: dict[str, list[dict]] = {}  # video -> rows of an earlier extraction
        for r in self._earlier_rows(mode):
            self.kept.setdefault(r["video"], []).append(r)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "preprocess.json"), "w") as f:
            json.dump(preprocess.to_dict(), f, indent=2)

    def _earlier_rows(self, mode: str) -> list[dict]:
        manifest = os.path.join(self.out_dir, "manifest.parquet")
        if not os.path.exists(manifest):
            return []
        rows = pq.read_table(manifest).to_pylist()
        if mode == "new":
            videos = len({r["video"] for r in rows})
            raise ValueError(
                f"{self.out_dir} already holds a face set ({len(rows)} faces of {videos} videos):"
                " --replace removes its crops first, --add adds these videos to it"
            )
        if mode == "replace":
            self._remove(rows)
            return []
        with open(os.path.join(self.out_dir, "preprocess.json")) as f:
            earlier = Preprocess.from_dict(json.load(f))
        if earlier != self.preprocess:
            raise ValueError(
                f"{self.out_dir} holds faces extracted with other settings ({earlier}); "
                "--add needs the same ones: use them, --replace, or another --out"
            )
        return rows

    def _remove(self, rows: list[dict]) -> None:
        for r in rows:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.out_dir, r["image"]))

    def add(self, row: dict, label: str, split_key: str | None = None) -> int:
        """Write the crops of one extracted video (any crops an earlier extraction into this
        folder made of it are removed); returns how many. `split_key`: see split_of."""
        crops = unpack_crops(row["crops"], int(row["crop_size"]) or self.preprocess.input_size)
        meta = unpack_face_meta(row["face_meta"])
        video = str(row["path"])
        self._remove(self.kept.pop(video, []))
        split = split_of(split_key or video, self.val_fraction)
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
        rows = [r for kept in self.kept.values() for r in kept] + self.rows
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), tmp)
        os.replace(tmp, path)
        return path
