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
import re

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
        ("source", pa.string()),  # the video's content id (pipeline.discover.content_id)
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
    line_of: dict[str, int] = {}
    label_of: dict[str, str] = {}
    # utf-8-sig: spreadsheet programs start their CSVs with a byte-order mark.
    with open(labels_csv, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"path", "label"} <= set(reader.fieldnames or ()):
            raise ValueError(
                f"{labels_csv}: needs a header row with columns path,label; "
                f"found {', '.join(reader.fieldnames or ()) or 'none'}"
            )
        for n, row in enumerate(reader, start=2):
            label = (row.get("label") or "").strip()  # None: a row with fewer cells
            label = {"0": "real", "1": "fake"}.get(label, label).lower()
            if label not in LABELS:
                raise ValueError(f"{labels_csv}:{n}: label must be real, fake, 0 or 1")
            path = (row.get("path") or "").strip()
            if not path:
                raise ValueError(f"{labels_csv}:{n}: no path")
            path = os.path.normpath(os.path.join(base, path))
            if path in line_of:
                if label_of[path] != label:  # which one is right, only the user knows
                    raise ValueError(
                        f"{labels_csv}:{n}: {path} is labelled {label} here and "
                        f"{label_of[path]} on line {line_of[path]}"
                    )
                continue  # the same row twice: one video, extracted once
            line_of[path], label_of[path] = n, label
    if not label_of:
        raise ValueError(f"{labels_csv}: no rows under its path,label header")
    return list(label_of.items())


def split_of(key: str, val_fraction: float) -> str:
    """A stable split by video: the same key always lands in the same split. The key is the
    video's content id, so a video keeps its split when its folder moves or it is relabelled,
    and two copies of one video never land in both splits."""
    if val_fraction <= 0:
        return ""
    return "val" if _position(key) < val_fraction else "train"


def _position(key: str) -> float:
    """Where the key's hash falls in [0, 1]: below the validation fraction means val."""
    h = int(hashlib.sha1(key.encode("utf-8", "backslashreplace")).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF


def labels_by_content(videos: list[tuple[str, str]]) -> dict[str, set[str]]:
    """The labels each key (content) is filed under, for (key, label) pairs: more than one is
    a labelling mistake (a copy or link of one clip in both classes)."""
    labels: dict[str, set[str]] = {}
    for key, label in videos:
        labels.setdefault(key, set()).add(label)
    return labels


def plan_splits(
    videos: list[tuple[str, str]],
    val_fraction: float,
    kept: list[tuple[str, str, str]] = (),
) -> dict[str, str]:
    """The split of each video of an extraction, by key: `videos` are (key, label); `kept` are
    (key, label, split) of videos an earlier extraction put in the face set, which stay where
    they are, also when extracted again.

    Each video's split is `split_of` its key, except where that leaves a class with two or
    more videos without any in val (or in train): hashing a few videos a class can, e.g. a
    one-in-ten chance with ten clips a class at 0.2. The class's video nearest the cut then
    moves over, so a small face set still validates on both classes."""
    if val_fraction <= 0:
        return {key: "" for key, _ in videos}
    # A video of the face set keeps its split when extracted again (--add): a checkpoint
    # trained on it before must not find it in val now.
    recorded = {key: split for key, _, split in kept}
    plan = {key: recorded.get(key) or split_of(key, val_fraction) for key, _ in videos}
    fixed = set(recorded) - set(plan)
    labels_of = labels_by_content(videos)
    for label in LABELS:
        keys = {k for k, lab in videos if lab == label}  # by content: copies count once
        # one content under both labels (a labelling mistake) stays where hashing put it
        movable = sorted(
            (k for k in keys if len(labels_of[k]) == 1 and k not in recorded), key=_position
        )
        splits = [plan[k] for k in keys]
        splits += [split for key, lab, split in kept if lab == label and key in fixed]
        if len(splits) < 2 or not movable:
            continue
        if "val" not in splits:
            plan[movable[0]] = "val"
        elif "train" not in splits:
            plan[movable[-1]] = "train"
    return plan


MODES = ("new", "replace", "add")


def crop_name(video: str, frame: int, face: int) -> str:
    """The file name of a crop: the video's name (60 characters at most), a hash of its path
    (two clips of one name stay apart), the frame and the face."""
    stem = os.path.splitext(os.path.basename(video))[0][:60]
    tag = hashlib.sha1(video.encode("utf-8", "backslashreplace")).hexdigest()[:8]
    return f"{stem}-{tag}_f{frame:06d}_{face}.png"


# What crop_name makes: how a leftover crop of an interrupted extraction is recognised.
CROP_NAME = re.compile(r".-[0-9a-f]{8}_f\d{6,}_\d+\.png$")


class FaceSetWriter:
    """Writes one extraction into `out_dir`. mode `new` refuses a folder that already holds a
    face set (a manifest); `replace` removes that set's crops first; `add` keeps them, with
    the same preprocessing and validation fraction only, and a video extracted again (found by
    its content, wherever it is now) replaces its own crops.

    The manifest is written at the end, so an extraction killed on the way leaves crops no
    manifest lists: `prepare` removes those (only files named as crops are, never a user's own
    images), whatever the mode, before the next extraction writes any of its own. The
    constructor only reads and checks, so that nothing is removed before the work can start."""

    def __init__(
        self, out_dir: str, preprocess: Preprocess, val_fraction: float = 0.0, mode: str = "new"
    ):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        self.out_dir = out_dir
        self.preprocess = preprocess
        self.val_fraction = val_fraction
        self.mode = mode
        self.rows: list[dict] = []
        self.replaced: list[dict] = []  # rows of the face set that `prepare` removes
        # rows of an earlier extraction, by source (manifests before that column: by video)
        self.kept: dict[str, list[dict]] = {}
        # (label, split) of every video the manifest lists, those whose crops an --add killed
        # on the way removed too: extracted again, it keeps that split
        self.recorded: dict[str, tuple[str, str]] = {}
        for r in self._earlier_rows(mode):
            key = r.get("source") or r["video"]
            self.recorded.setdefault(key, (r["label"], r["split"]))
            if os.path.exists(os.path.join(out_dir, r["image"])):
                self.kept.setdefault(key, []).append(r)

    def prepare(self) -> int:
        """Clear the way for this extraction (the old set's crops with `replace`, those of
        videos left out, and the crops no manifest lists) and record its settings; returns how
        many leftover crops were removed."""
        listed = {os.path.normpath(r["image"]) for rows in self.kept.values() for r in rows}
        self._remove(self.replaced)
        if self.mode == "replace":
            # the manifest goes with its crops: an interrupted replacement never leaves one
            # that lists crops which are gone
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.out_dir, "manifest.parquet"))
        leftovers = [
            {"image": image}
            for split in ("train", "val", "")
            for label in LABELS
            if os.path.isdir(folder := os.path.join(self.out_dir, split, label))
            for name in os.listdir(folder)
            if CROP_NAME.search(name) and (image := os.path.join(split, label, name)) not in listed
        ]
        self._remove(leftovers)
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, "preprocess.json"), "w") as f:
            json.dump(self.preprocess.to_dict(), f, indent=2)
        return len(leftovers)

    def _earlier_rows(self, mode: str) -> list[dict]:
        manifest = os.path.join(self.out_dir, "manifest.parquet")
        if not os.path.exists(manifest):
            return []
        table = pq.read_table(manifest)
        rows = table.to_pylist()
        if mode == "new":
            videos = len({r["video"] for r in rows})
            raise ValueError(
                f"{self.out_dir} already holds a face set ({len(rows)} faces of {videos} videos):"
                " --replace removes its crops first, --add adds these videos to it"
            )
        if mode == "replace":
            self.replaced = rows
            return []
        with open(os.path.join(self.out_dir, "preprocess.json")) as f:
            earlier = Preprocess.from_dict(json.load(f))
        if earlier != self.preprocess:
            raise ValueError(
                f"{self.out_dir} holds faces extracted with other settings ({earlier}); "
                "--add needs the same ones: use them, --replace, or another --out"
            )
        recorded = (table.schema.metadata or {}).get(b"val_fraction")
        if recorded is not None:
            same = float(recorded) == self.val_fraction
        else:  # a manifest written before the fraction was recorded: split or not, at least
            same = any(r["split"] for r in rows) == (self.val_fraction > 0)
        if not same:
            was = float(recorded) if recorded is not None else "another"
            raise ValueError(
                f"{self.out_dir} was split with --val-fraction {was}: --add needs the same one"
            )
        return rows

    def _remove(self, rows: list[dict]) -> None:
        for r in rows:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.out_dir, r["image"]))
        # Emptied folders go too: training takes an empty train/ for a split layout.
        for split in ("train", "val", ""):
            for label in LABELS:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(self.out_dir, split, label))
            if split:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(self.out_dir, split))

    def add(
        self, row: dict, label: str, source: str | None = None, split: str | None = None
    ) -> int:
        """Write the crops of one extracted video (any crops an earlier extraction into this
        folder made of it are removed); returns how many. `source`: the video's content id
        (pipeline.discover.content_id), which also decides its split unless `split` (from
        `plan_splits`) is given."""
        crops = unpack_crops(row["crops"], int(row["crop_size"]) or self.preprocess.input_size)
        meta = unpack_face_meta(row["face_meta"])
        video = str(row["path"])
        source = source or video
        self._remove(self.kept.pop(source, []) + self.kept.pop(video, []))
        if split is None or self.val_fraction <= 0:
            split = split_of(source, self.val_fraction)
        folder = os.path.join(self.out_dir, split, label)
        os.makedirs(folder, exist_ok=True)
        for crop, m in zip(crops, meta, strict=True):
            frame, face = int(m[0]), int(m[2])
            name = crop_name(video, frame, face)
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
                    "source": source,
                }
            )
        return len(crops)

    def kept_videos(self) -> list[tuple[str, str, str]]:
        """(key, label, split) of the videos an earlier extraction put in the face set."""
        return [(key, label, split) for key, (label, split) in self.recorded.items()]

    def leave_out(self, keys: set[str]) -> None:
        """Videos this extraction leaves out (their content is labelled both ways now): their
        earlier crops go too, in `prepare`, so no label of theirs is trained on."""
        for key in keys & set(self.kept):
            self.replaced += self.kept.pop(key)

    def all_rows(self) -> list[dict]:
        """The face set's rows: those kept from an earlier extraction, then this one's."""
        return [r for kept in self.kept.values() for r in kept] + self.rows

    def close(self) -> str:
        path = os.path.join(self.out_dir, "manifest.parquet")
        tmp = os.path.join(self.out_dir, ".manifest.parquet.tmp")
        schema = MANIFEST_SCHEMA.with_metadata({"val_fraction": str(self.val_fraction)})
        pq.write_table(pa.Table.from_pylist(self.all_rows(), schema=schema), tmp)
        os.replace(tmp, path)
        return path
