"""The face-extraction job: labelled videos -> face crops for training, on Ray Data, with the
scan's own extraction stage (jobs.scan.extracted)."""

from __future__ import annotations

import time
from collections import Counter

from jobs.cluster import init_ray
from jobs.scan import extracted, rows_of
from pipeline import audit
from pipeline.audit import Log, progress_line, stderr_log
from pipeline.config import ExtractConfig
from pipeline.discover import content_id, describe_files
from pipeline.faces import make_detector
from pipeline.faceset import (
    LABELS,
    FaceSetWriter,
    labelled_videos,
    labels_by_content,
    plan_splits,
)


def _content_id(path: str) -> str | None:
    try:
        return content_id(path)
    except OSError:  # unreadable now: its extraction fails and says why
        return None


def run_extract(cfg: ExtractConfig, log: Log = stderr_log) -> dict:
    """Extract faces of labelled videos into a face set folder; `cfg.mode`: see FaceSetWriter."""
    video_dir, out_dir, preprocess = cfg.video_dir, cfg.out_dir, cfg.preprocess
    make_detector(preprocess)  # an unusable detector fails here, before any work
    videos = labelled_videos(video_dir, cfg.labels_csv)
    label_of = dict(videos)
    refs = [r.to_row() for r in describe_files([p for p, _ in videos])]
    source_of = {r["path"]: _content_id(r["path"]) for r in refs if not r["error"]}
    writer = FaceSetWriter(out_dir, preprocess, cfg.val_fraction, cfg.mode)
    key_of = {r["path"]: source_of.get(r["path"]) or r["path"] for r in refs if not r["error"]}
    labels = labels_by_content([(key, label_of[path]) for path, key in key_of.items()])
    conflicting = sorted(path for path, key in key_of.items() if len(labels[key]) > 1)
    if conflicting:  # a copy or link filed under both labels: faces of one clip in both classes
        log(
            f"warning: left out {len(conflicting)} videos whose content is labelled both real "
            f"and fake (copies or links of one clip; any earlier crops of theirs too), e.g. "
            f"{', '.join(conflicting[:2])}"
        )
        left_out = set(conflicting)
        writer.leave_out({key_of[path] for path in left_out})
        refs = [r for r in refs if r["path"] not in left_out]
        key_of = {path: key for path, key in key_of.items() if path not in left_out}
    plan = plan_splits(
        [(key, label_of[path]) for path, key in key_of.items()],
        cfg.val_fraction,
        writer.kept_videos(),
    )
    counts: Counter = Counter()
    init_ray(cfg.address)
    leftovers = writer.prepare()  # only now that the work can start is anything removed
    if leftovers:
        log(f"removed {leftovers} crops an interrupted extraction left in {out_dir}")
    log(f"extracting faces of {len(refs)} videos into {out_dir}")
    ds = extracted(refs, preprocess.to_dict(), cfg.frames, cfg.max_faces)
    started = last_report = time.monotonic()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for row in rows_of(batch):
            counts["videos"] += 1
            counts[str(row["status"])] += 1
            if row["status"] == "error":
                log(f"skipped {row['path']}: {row['error']}")
                continue
            path = str(row["path"])
            counts[f"faces_{label_of[path]}"] += writer.add(
                row, label_of[path], source_of.get(path), plan.get(key_of.get(path, path))
            )
        if time.monotonic() - last_report >= audit.PROGRESS_EVERY_S:
            last_report = time.monotonic()
            faces = f" ({counts['faces_real'] + counts['faces_fake']} faces)"
            log(progress_line(counts["videos"], len(refs), last_report - started, faces))
    manifest = writer.close()
    made = Counter((r["split"] or "all", r["label"]) for r in writer.all_rows())
    by_split = {
        split: {label: made[(split, label)] for label in LABELS}
        for split in (("train", "val") if cfg.val_fraction > 0 else ("all",))
    }
    real_only = not any(faces["fake"] for faces in by_split.values())
    if real_only:
        log("real faces only: `deepfake train` trains on self-blended fakes made from them")
    for split, faces in by_split.items():
        for label, n in faces.items():
            if not n and not (real_only and label == "fake"):
                # training refuses a split without both classes: say so now
                log(f"warning: no {label} faces in {split}: add videos or change --val-fraction")
    return {
        "videos": counts["videos"],
        "ok": counts["ok"],
        "no_face": counts["no_face"],
        "error": counts["error"],
        "faces_real": counts["faces_real"],
        "faces_fake": counts["faces_fake"],
        "conflicting_labels": len(conflicting),
        "faces_by_split": by_split,  # of the whole face set (with --add, earlier faces too)
        "manifest": manifest,
    }
