"""The scan job: discover -> decode, detect, crop (CPU tasks) -> score (GPU or CPU actors) ->
Parquet reports written by the driver as results stream in.

One video travels as one row. Failures travel as rows too, with status `error` and the reason.
Run it locally with `deepfake scan`, or on a cluster with
    ray job submit --working-dir . -- \
        python -m jobs.scan VIDEO_DIR --out REPORT_DIR --checkpoint CKPT
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable

import ray
from ray.data import ActorPoolStrategy, DataContext

from pipeline.config import Preprocess, ScanConfig
from pipeline.discover import discover
from pipeline.extract import extract_video
from pipeline.model import load_checkpoint, model_from_checkpoint
from pipeline.reports import ReportWriter, new_run_id
from pipeline.scoring import Scorer, default_device, score_batch

PROGRESS_EVERY_S = 10.0
# One block per video, up to this many blocks: small blocks let Ray spread videos evenly over
# the CPUs and stream results to the writer; past this, videos share blocks.
MAX_BLOCKS = 20_000
EXTRACT_MEMORY = 768 * 1024**2


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address` (or RAY_ADDRESS), else start an embedded local Ray."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)


def extract_row(row: dict, preprocess: dict, frames: int, max_faces: int) -> dict:
    """Ray Data map stage: one video reference -> one row with its face crops."""
    import cv2

    # Ray gives this task one CPU; OpenCV's own thread pool would fight the other tasks.
    cv2.setNumThreads(1)
    return extract_video(row, Preprocess.from_dict(preprocess), frames, max_faces)


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
            torch.set_num_threads(max(1, cpu_threads))
        model = model_from_checkpoint({"arch": arch, "model": ray.get(model_ref[0])})
        self.scorer = Scorer(model, Preprocess.from_dict(preprocess), max_batch=max_batch)
        self.options = score_options

    def __call__(self, batch: dict) -> dict:
        return score_batch(batch, self.scorer, **self.options)


def scorer_resources(cfg: ScanConfig) -> tuple[int, float, float]:
    """(actors, GPUs per actor, CPUs per actor): one actor per GPU the cluster has (or that
    --gpus allows), or a single CPU actor when there is no GPU."""
    gpus = ray.cluster_resources().get("GPU", 0.0) if cfg.gpus is None else cfg.gpus
    if gpus >= 1:
        return cfg.scorer_actors or int(gpus), 1.0, 1.0
    return cfg.scorer_actors or 1, 0.0, 1.0


def build_dataset(cfg: ScanConfig, ckpt: dict, rows: list[dict], threshold: float):
    preprocess = ckpt["preprocess"].to_dict()
    actors, gpus_each, cpus_each = scorer_resources(cfg)
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
    ds = ds.map(
        extract_row,
        fn_kwargs={"preprocess": preprocess, "frames": cfg.frames, "max_faces": cfg.max_faces},
        num_cpus=1,
        # A decoding worker holds its libraries and one full frame (25 MB for 4K). Declaring it
        # also keeps Ray Data from fusing this stage into the scoring actors (it fuses stages
        # with equal resource requests), which would run all decoding on those few actors.
        memory=EXTRACT_MEMORY,
    )
    return ds.map_batches(
        ScoreActor,
        fn_constructor_kwargs={
            # In a list, so Ray hands the reference over instead of resolving it early.
            "model_ref": [ray.put(ckpt["model"])],
            "arch": ckpt["arch"],
            "preprocess": preprocess,
            "max_batch": cfg.max_crops_per_forward,
            "cpu_threads": int(cpus_each),
            "score_options": {
                "threshold": threshold,
                "method": cfg.aggregate,
                "top_k": cfg.top_k,
                "model_id": ckpt["model_id"],
            },
        },
        batch_size=cfg.batch_videos,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors),
        num_gpus=gpus_each,
        num_cpus=cpus_each,
    )


def _rows(batch: dict) -> list[dict]:
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
        f" {s['fake']} fake, {s['real']} real, {s['no_face']} no_face, {s['error']} error"
        f" -> {report_dir}"
    )


def run_scan(cfg: ScanConfig, log: Callable[[str], None] | None = None) -> dict:
    """Scan cfg.video_dir into cfg.report_dir. Raises CheckpointError or NotADirectoryError
    before anything is written when the inputs are unusable; otherwise every video found ends
    as exactly one row of this run, whatever state it is in."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.monotonic()
    ckpt = load_checkpoint(cfg.checkpoint)
    threshold = cfg.threshold if cfg.threshold is not None else float(ckpt["threshold"])
    refs = discover(cfg.video_dir, cfg.extensions)
    run_id = cfg.run_id or new_run_id()
    log(f"run {run_id}: {len(refs)} videos under {cfg.video_dir}, model {ckpt['model_id']}")
    counts: Counter = Counter()
    writer = ReportWriter(cfg.report_dir, run_id)
    if refs:
        init_ray(cfg.address)
        DataContext.get_current().enable_progress_bars = False  # our own progress lines instead
        if default_device().type == "cpu" and not ray.cluster_resources().get("GPU"):
            log("no GPU found: scoring on CPU, which is slow")
        ds = build_dataset(cfg, ckpt, [r.to_row() for r in refs], threshold)
        last_report = time.monotonic()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for row in _rows(batch):
                record = writer.add(row)
                counts["videos"] += 1
                counts[record["status"]] += 1
                if record["label"]:
                    counts[record["label"]] += 1
            if cfg.progress and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                last_report = time.monotonic()
                done, elapsed = counts["videos"], last_report - started
                rate = done / elapsed if elapsed else 0.0
                eta = (len(refs) - done) / rate if rate else float("nan")
                log(f"{done}/{len(refs)} videos, {rate:.2f} videos/s, about {eta:.0f}s left")
    writer.close()
    summary = summarise(counts, time.monotonic() - started)
    summary["run_id"] = run_id
    if counts["videos"] != len(refs):  # a lost result is a bug, never something to hide
        raise RuntimeError(f"{len(refs)} videos found but {counts['videos']} results written")
    return summary


if __name__ == "__main__":
    from jobs.cli import scan

    scan(prog_name="python -m jobs.scan")
