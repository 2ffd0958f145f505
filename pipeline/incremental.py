"""What a rescan skips and what it carries over: results that are final for the same file,
model and settings; videos moved or renamed (the same content at another path); videos no
longer found. Plain functions over the report's latest rows: no Ray."""

from __future__ import annotations

import math
import os
from datetime import datetime

import pandas as pd
import pyarrow as pa

from pipeline.config import Preprocess, ScanConfig, describe_settings
from pipeline.extract import empty_row
from pipeline.reports.read import latest_results, read_table
from pipeline.reports.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from pipeline.reports.store import FACES, VIDEOS


def finished_videos(
    report_dir: str, latest: pd.DataFrame | None = None
) -> dict[str, tuple[str, str, str]]:
    """path -> (fingerprint, model_id, settings) of every video whose latest result is final:
    scored (`ok`) or decoded without a face (`no_face`). Errors are not final: they are retried.
    Rows written before the settings were recorded have "" for them. `latest`: what
    latest_results gives, when the caller has it already."""
    df = latest_results(report_dir) if latest is None else latest
    df = df[df.status.isin(["ok", "no_face"]) & df.fingerprint.notna()]
    keys = zip(df.fingerprint, df.model_id.fillna(""), df.settings.fillna(""), strict=True)
    return dict(zip(df.path, keys, strict=True))


def moved_results(
    report_dir: str, moves: dict[str, str], latest: pd.DataFrame, run_id: str, scanned_at: datetime
) -> tuple[pa.Table, pa.Table]:
    """Videos found again at another path, with the same content (`moves`: new path -> an old
    path whose latest result is final and was made by the same model and settings): that
    result, the old path's row of run `latest` names, restated as this run's rows for the new
    path, (videos, faces). Read before this run writes anything of its own."""
    pairs = pd.DataFrame({"new": list(moves), "path": list(moves.values())})
    pairs = pairs.merge(latest[["path", "run_id"]], on="path")  # the exact result: path and run
    old = sorted(set(pairs.path))
    videos = read_table(report_dir, VIDEOS, VIDEOS_SCHEMA, paths=old)
    videos = videos.merge(pairs, on=["path", "run_id"]).drop_duplicates("new")
    faces = read_table(report_dir, FACES, FACES_SCHEMA, paths=old)
    faces = faces.merge(pairs, on=["path", "run_id"])

    def restated(frame: pd.DataFrame, schema: pa.Schema, **columns) -> pa.Table:
        frame = frame.assign(path=frame.new, run_id=run_id, **columns)[schema.names]
        return pa.Table.from_pandas(frame.reset_index(drop=True), schema=schema,
                                    preserve_index=False)  # fmt: skip

    return (
        restated(videos, VIDEOS_SCHEMA, scanned_at=scanned_at),
        restated(faces, FACES_SCHEMA),
    )


STATUS_MISSING = "missing"


def vanished_videos(
    report_dir: str, video_dir: str, found: set[str], latest: pd.DataFrame | None = None
) -> list[dict]:
    """Rows of status `missing` for the videos under `video_dir` that the report still lists but
    this scan no longer finds (`found`: every path it discovered, folders it could not list
    included): deleted, moved or renamed files, and folders whose listing error is gone because
    they can be listed again. Their earlier results stay in the history; only the latest row
    says they are gone. Left alone: files that still exist (another --extensions choice) and
    anything inside a folder this scan could not list (unknown, and that folder's row says so).
    `latest`: what latest_results gives, when the caller has it already."""
    root = os.path.abspath(video_dir)
    inside = os.path.join(root, "")  # "/videos/" (not "/videos2"), and "/" for "/"
    latest = latest_results(report_dir) if latest is None else latest
    rows = []
    for path, status, run_id in zip(latest.path, latest.status, latest.run_id, strict=True):
        if status == STATUS_MISSING or path in found or not path.startswith(inside):
            continue
        if _inside_any(path, root, found):  # under a folder that cannot be listed now
            continue
        if not os.path.lexists(path):
            why = f"no longer found under {root}: deleted, moved or renamed since run {run_id}"
        elif status == "error" and os.path.isdir(path):
            why = "this folder can be listed again: its videos have rows of their own"
        else:  # still there, not selected this time
            continue
        nothing = {"fake_score": math.nan, "label": "", "faces_scored": 0, "model_id": ""}
        rows.append(
            {**empty_row({"path": path}), **nothing, "status": STATUS_MISSING, "error": why}
        )
    return rows


def _inside_any(path: str, root: str, folders: set[str]) -> bool:
    """Whether a folder between `path` and `root` (both included) is in `folders`."""
    parent = os.path.dirname(path)
    while len(parent) >= len(root):
        if parent in folders:
            return True
        if parent == os.path.dirname(parent):  # "/"
            break
        parent = os.path.dirname(parent)
    return False


def pending(
    refs: list, finished: dict[str, tuple[str, str, str]], model_id: str, settings: str
) -> list:
    """The videos this run must score: new, changed (another fingerprint), scored by another
    model or with other settings, or not finished last time (errors are retried). Unreadable
    files always come back."""
    return [
        r
        for r in refs
        if r.error
        or not r.fingerprint
        or finished.get(r.path) != (r.fingerprint, model_id, settings)
    ]


def moved_videos(
    todo: list, finished: dict[str, tuple[str, str, str]], model_id: str, settings: str
) -> dict[str, str]:
    """Videos of `todo` whose content has a final result at another path, by the same model
    and settings (a folder moved or renamed, a file copied with its time kept): new path ->
    that path, one no longer found when there is one (the file that moved, rather than a copy
    that stayed). The fingerprint (size, modification time, first and last 64 KiB) says so."""
    wanted = {r.fingerprint for r in todo if not r.error}
    sources = [
        path
        for path, (fingerprint, model, with_settings) in finished.items()
        if fingerprint in wanted and (model, with_settings) == (model_id, settings)
    ]
    by_fingerprint: dict[str, str] = {}
    for path in sorted(sources, key=lambda path: (os.path.lexists(path), path)):  # gone first
        by_fingerprint.setdefault(finished[path][0], path)
    return {
        r.path: by_fingerprint[r.fingerprint]
        for r in todo
        if not r.error
        and r.fingerprint in by_fingerprint
        and by_fingerprint[r.fingerprint] != r.path
    }


def say_where_moved(gone: list[dict], latest, refs: list, moves: dict[str, str], run_id: str):
    """A path no longer found whose content is found at a path new to the report says where,
    whether or not its result could be kept there (another model or settings score it again),
    and so does every copy of a folder moved, not only the one whose result was carried: the
    path with the same file name when there is one."""
    fingerprints = dict(zip(latest.path, latest.fingerprint, strict=True))
    now_at: dict[str, list[str]] = {}
    for r in sorted(refs, key=lambda r: (r.path not in moves, r.path)):  # carried ones first
        # a path that held this content before is a copy that stayed, not where one went
        if not r.error and r.fingerprint and fingerprints.get(r.path) != r.fingerprint:
            now_at.setdefault(r.fingerprint, []).append(r.path)
    for row in gone:
        there = now_at.get(fingerprints.get(row["path"]), [])
        name = os.path.basename(row["path"])
        new = next((p for p in there if os.path.basename(p) == name), there[0] if there else "")
        if new:
            row["error"] = (
                f"moved or renamed to {new} (the same content), found there by run {run_id}"
            )


def scan_settings(cfg: ScanConfig, preprocess: Preprocess, threshold: float) -> str:
    """What a video's result depends on besides its file (fingerprint) and the checkpoint
    (model_id): recorded in every row, and a result made with other settings is not reused."""
    return describe_settings(
        cfg.frames, cfg.max_faces, preprocess, cfg.aggregate, cfg.top_k, threshold
    )
