"""The training job on Ray Train: phase 1 trains the head on a frozen backbone, phase 2 all
layers at a lower learning rate. After every epoch, rank 0 writes RUN_DIR/last.pt (model,
optimizer, scheduler, scaler, epoch, phase, metrics, history, config, preprocessing) and, when
validation AUC improves, RUN_DIR/best.pt with the threshold chosen on validation. Running the
same command again resumes after the last finished epoch.

RUN_DIR must be reachable by the rank-0 worker: local runs trivially; on a cluster, a shared
filesystem. Run it with `deepfake train` or
    ray job submit --working-dir . -- python -m jobs.train DATA_DIR --out RUN_DIR
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from jobs.scan import init_ray
from pipeline.config import Preprocess, TrainConfig
from pipeline.metrics import choose_threshold, summary
from pipeline.model import (
    BoundaryModel,
    build_model,
    load_checkpoint,
    model_from_checkpoint,
    resolve_pretrained,
    save_checkpoint,
)
from pipeline.training import (
    FaceImages,
    Repeated,
    build_transform,
    fast_path,
    list_images,
    make_ema,
    make_optimizer,
    make_scheduler,
    predict,
    resume_schedule,
    set_phase,
    train_one_epoch,
)

METRIC_COLUMNS = (
    "recipe",
    "epoch",
    "phase",
    "lr",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_auc",
    "val_eer",
    "threshold",
    "seconds",
)
# Settings that cannot change when a run is resumed; epochs, learning rates and the like can.
FIXED_ON_RESUME = ("arch", "image_size", "resize")


def split_dirs(cfg: TrainConfig) -> tuple[str, str]:
    """(train folder, validation folder) of a data set laid out as DATA_DIR/{train,val}/
    {real,fake}, or DATA_DIR/{real,fake} with --val."""
    train = os.path.join(cfg.data_dir, "train")
    if not os.path.isdir(train):
        train = cfg.data_dir
    val = cfg.val_dir or os.path.join(cfg.data_dir, "val")
    if not os.path.isdir(val):
        raise FileNotFoundError(
            f"no validation folder: expected {val}/{{real,fake}} (or give --val DIR)"
        )
    return train, val


def preprocess_for(cfg: TrainConfig) -> Preprocess:
    """The scan's preprocessing, at the trained input size; the extraction settings of the
    training faces win when FACES_DIR/preprocess.json (written by extract-faces) says them."""
    import json

    parent = os.path.dirname(os.path.normpath(cfg.data_dir))
    for folder in (cfg.data_dir, os.path.join(cfg.data_dir, "train"), parent):
        path = os.path.join(folder, "preprocess.json")
        if os.path.isfile(path):
            with open(path) as f:
                extracted = Preprocess.from_dict(json.load(f))
            settings = {**extracted.to_dict(), "input_size": cfg.image_size, "tta": cfg.tta}
            if extracted.crop == "native":
                check_native_faces(cfg, extracted)
            elif not cfg.resize and cfg.image_size != extracted.input_size:
                settings["margin"] = native_margin(cfg.image_size, extracted)
            return Preprocess.from_dict(settings)
    return Preprocess(
        input_size=cfg.image_size, crop="resize" if cfg.resize else "native", tta=cfg.tta
    )


def check_native_faces(cfg: TrainConfig, extracted: Preprocess) -> None:
    """Faces extracted as native windows are trained on as they are: the scan cuts the same
    window (same size, same whole-factor shrink) only at the size they were extracted at."""
    if cfg.resize or cfg.image_size != extracted.input_size:
        raise ValueError(
            f"these faces were extracted as native {extracted.input_size} px windows: train "
            f"on them with --no-resize --image-size {extracted.input_size} (a recipe may cut "
            "smaller --train-crop patches), or extract them again at another --image-size"
        )


def native_margin(image_size: int, extracted: Preprocess) -> float:
    """With --no-resize the network sees the central `image_size` pixels of the extracted
    crops, at their scale: the margin with which the scan cuts that same region of a face
    (and, resizing it to `image_size`, reaches that same scale)."""
    if image_size > extracted.input_size:
        raise ValueError(
            f"--no-resize trains on the faces' own {extracted.input_size} px crops: "
            f"--image-size {image_size} would pad them with black the scan never shows; "
            f"use at most {extracted.input_size}, or extract-faces --image-size {image_size}"
        )
    side = (1.0 + 2.0 * extracted.margin) * image_size / extracted.input_size
    return (side - 1.0) / 2.0


def phase_of(cfg: TrainConfig, epoch: int) -> str:
    return "frozen" if epoch < cfg.epochs_frozen else "full"


def phase_epochs(cfg: TrainConfig, phase: str) -> int:
    return cfg.epochs_frozen if phase == "frozen" else cfg.epochs_full


def phase_start(cfg: TrainConfig, phase: str) -> int:
    return 0 if phase == "frozen" else cfg.epochs_frozen


def _atomic_text(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_metrics(run_dir: str, history: list[dict]) -> None:
    """metrics.csv and curves.png, rewritten whole from the checkpoint's history, so they
    always agree with last.pt (also after a resume)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in METRIC_COLUMNS})
    _atomic_text(os.path.join(run_dir, "metrics.csv"), buf.getvalue())
    plot_curves(history, os.path.join(run_dir, "curves.png"))


def plot_curves(history: list[dict], path: str) -> None:
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    loss_ax, score_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="val loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.legend()
    for key in ("val_accuracy", "val_auc"):
        score_ax.plot(epochs, [h[key] for h in history], "o-", label=key)
    score_ax.plot(epochs, [h["val_eer"] for h in history], "o-", label="val_eer")
    score_ax.set_xlabel("epoch")
    score_ax.set_ylim(0, 1.02)
    score_ax.legend()
    frozen = [h["epoch"] for h in history if h["phase"] == "frozen"]
    for ax in (loss_ax, score_ax):
        if frozen:
            ax.axvspan(min(frozen) - 0.5, max(frozen) + 0.5, color="0.9", label="frozen")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".png")
    os.close(fd)
    fig.savefig(tmp)
    os.replace(tmp, path)


def load_resume_state(cfg: TrainConfig) -> dict | None:
    path = os.path.join(cfg.run_dir, "last.pt")
    if not os.path.exists(path):
        return None
    state = load_checkpoint(path)
    old = state.get("config", {})
    changed = [k for k in FIXED_ON_RESUME if old.get(k) != getattr(cfg, k)]
    if changed:
        raise ValueError(
            f"{path} was trained with other {', '.join(changed)}; "
            "use a new --out folder or the same settings"
        )
    return state


def reshuffle(loader: DataLoader, epoch: int) -> None:
    """Another shuffle and other shards every epoch with several workers: Ray's
    DistributedSampler seeds its order with the epoch it is told, and left alone it repeats
    the first epoch's batches, and each worker its own share of the images, every epoch."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def repair_run_dir(run_dir: str, state: dict) -> None:
    """What a kill between last.pt and the files written after it leaves undone: best.pt of
    the epoch last.pt names as the best, and metrics.csv and curves.png of its history."""
    best_epoch = state.get("best_epoch")
    best_path = os.path.join(run_dir, "best.pt")
    if best_epoch is not None and best_epoch == state["epoch"]:
        best = load_checkpoint(best_path) if os.path.exists(best_path) else None
        if best is None or best.get("epoch") != best_epoch:
            common = (
                "preprocess", "arch", "recipe", "threshold", "epoch", "phase", "metrics", "config"
            )  # fmt: skip
            extra = {k: state[k] for k in common if k in state}
            save_checkpoint(best_path, model_from_checkpoint(state), **extra)
    if state.get("history"):
        write_metrics(run_dir, state["history"])


def train_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""
    quiet_report_lines()
    cfg = TrainConfig(**loop_config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed + rank)
    if device.type == "cpu":
        torch.set_num_threads(max(1, cfg.cpus_per_worker))
    preprocess = Preprocess.from_dict(loop_config["preprocess"])
    train_dir, val_dir = split_dirs(cfg)
    landmarks = read_landmarks(loop_config.get("landmarks"))
    images = FaceImages(
        list_images(train_dir, need_fakes=False),
        build_transform(cfg, preprocess, train=True),
        blend_fraction=cfg.self_blend_fraction if cfg.self_blend else 0.0,
        cache=cfg.cache_images,
        landmarks=landmarks,
        boundaries=cfg.boundary_head,
    )
    train_set = Repeated(images, cfg.patches_per_image) if cfg.train_crop else images
    loader_workers = max(0, cfg.cpus_per_worker - 1)
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(train_set) >= 2 * cfg.batch_size * world,
        num_workers=loader_workers,
        persistent_workers=loader_workers > 0,
        pin_memory=device.type == "cuda",
    )
    # With several workers Ray adds a DistributedSampler (a shard per worker; see reshuffle).
    train_loader = ray.train.torch.prepare_data_loader(train_loader, move_to_device=False)
    val_loader = None
    if rank == 0:  # rank 0 alone validates, on the whole set
        val_items = list_images(val_dir, need_fakes=False)
        val_set = FaceImages(
            val_items,
            build_transform(cfg, preprocess, False),
            # A val/ without fakes is scored against seeded blends of its real faces.
            blend_fraction=0.0 if any(y for _, y in val_items) else 1.0,
            cache=cfg.cache_images,
            landmarks=landmarks,
            fixed_blends=True,
            seed=cfg.seed,
        )
        val_loader = DataLoader(val_set, batch_size=cfg.batch_size * 2, num_workers=loader_workers)

    state = load_resume_state(cfg)
    if state is not None and rank == 0:
        # Also here: Ray restarts a failed worker group inside the same job, not via the driver.
        repair_run_dir(cfg.run_dir, state)
    # A resumed run's weights come from last.pt: the --pretrained file is not needed again.
    model = build_model(cfg.arch, cfg.pretrained if state is None else None)
    # With self-blends, a boundary head on the same backbone learns where each blend's edge is.
    trained = BoundaryModel(model) if cfg.boundary_head else model
    if cfg.boundary_head and state is not None and "boundary_head" in state:
        trained.head.load_state_dict(state["boundary_head"])
    start_epoch, history, best_auc, best_epoch = 0, [], -math.inf, None
    if state is not None:
        # With an average of the weights (--ema) "model" holds the average, what is scored.
        model.load_state_dict(state.get("train_model", state["model"]))
        start_epoch = int(state["epoch"]) + 1
        history = list(state.get("history", []))
        best_auc = float(state.get("best_auc", -math.inf))
        best_epoch = state.get("best_epoch")
        if rank == 0:
            say(f"resuming after epoch {state['epoch']} from {cfg.run_dir}/last.pt")
    trained.to(device)
    if fast_path(device):
        trained.to(memory_format=torch.channels_last)
    ema = make_ema(model, cfg.ema)
    if ema is not None and state is not None and "train_model" in state:
        ema.module.load_state_dict(state["model"])
        ema.n_averaged.fill_(int(state.get("ema_updates", 0)))
    scored = ema.module if ema is not None else model  # what is validated and saved
    criterion = nn.BCEWithLogitsLoss()
    steps_per_epoch = len(train_loader)
    phase, ddp, optimizer, scheduler = None, None, None, None

    for epoch in range(start_epoch, cfg.epochs):
        started = time.monotonic()
        if phase_of(cfg, epoch) != phase:
            phase = phase_of(cfg, epoch)
            set_phase(model, phase)
            lr = cfg.lr if phase == "frozen" else cfg.phase2_lr
            # A new DDP wrapper per phase: DDP fixes the set of trainable parameters at wrap.
            ddp = ray.train.torch.prepare_model(trained, move_to_device=False)
            optimizer = make_optimizer(trained, lr, cfg.weight_decay)
            scheduler = make_scheduler(
                optimizer, steps_per_epoch, phase_epochs(cfg, phase), cfg.warmup_epochs
            )
            if state is not None and state.get("phase") == phase and epoch == start_epoch:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                steps_done = (epoch - phase_start(cfg, phase)) * steps_per_epoch
                resume_schedule(optimizer, scheduler, lr, steps_done, cfg.weight_decay)
        set_phase(model, phase)
        reshuffle(train_loader, epoch)
        train_loss = train_one_epoch(
            ddp,
            criterion,
            optimizer,
            scheduler,
            train_loader,
            device,
            label_smoothing=cfg.label_smoothing,
            mix=cfg.mix,
            mix_alpha=cfg.mix_alpha,
            ema=ema,
            boundary_weight=cfg.boundary_weight if cfg.boundary_head else 0.0,
        )
        if world > 1:  # every worker's shard, not rank 0's alone (the shards are equal)
            loss = torch.tensor([train_loss], device=device)
            torch.distributed.all_reduce(loss)
            train_loss = float(loss) / world
        metrics = {"recipe": cfg.recipe, "epoch": epoch, "phase": phase}
        if rank == 0:
            labels, scores, val_loss = predict(scored, val_loader, device, cfg.tta)
            threshold = choose_threshold(labels, scores)
            s = summary(labels, scores, threshold)
            metrics.update(
                lr=optimizer.param_groups[0]["lr"],
                train_loss=train_loss,
                val_loss=val_loss,
                val_accuracy=s["accuracy"],
                val_auc=s["auc"],
                val_eer=s["eer"],
                threshold=threshold,
                seconds=round(time.monotonic() - started, 2),
            )
            history.append(metrics)
            improved = not math.isnan(s["auc"]) and s["auc"] > best_auc
            if improved:
                best_auc, best_epoch = s["auc"], epoch
            common = {
                "preprocess": preprocess,
                "arch": cfg.arch,
                "recipe": cfg.recipe,
                "threshold": threshold,
                "epoch": epoch,
                "phase": phase,
                "metrics": metrics,
                "config": cfg.to_dict(),
            }
            # last.pt first: a kill before best.pt is written leaves last.pt saying that this
            # epoch is the best, and repair_run_dir writes best.pt from it. (best.pt first
            # could leave a best.pt of an epoch that the resumed run trains again differently.)
            resume_only = {}
            if cfg.boundary_head:  # training only: kept for a resumed run, never scored
                resume_only["boundary_head"] = {
                    k: v.detach().cpu() for k, v in trained.head.state_dict().items()
                }
            if ema is not None:  # the training weights too, for a resumed run to go on from
                resume_only |= {
                    "train_model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "ema_updates": int(ema.n_averaged),
                }
            save_checkpoint(
                os.path.join(cfg.run_dir, "last.pt"),
                scored,
                **common,
                **resume_only,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler={},  # bf16 autocast needs no loss scaling
                history=history,
                best_auc=best_auc,
                best_epoch=best_epoch,
            )
            if improved:
                save_checkpoint(os.path.join(cfg.run_dir, "best.pt"), scored, **common)
            write_metrics(cfg.run_dir, history)
            say(
                f"epoch {epoch} ({phase}): train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                f"acc {s['accuracy']:.4f}, auc {s['auc']:.4f}, eer {s['eer']:.4f}"
            )
        ray.train.report(metrics)


def quiet_report_lines() -> None:
    """Ray Train logs every report again, as a dict, at INFO, under a logger named after its
    source file, which LoggingConfig's level does not reach; the epoch line says it already."""
    try:  # a private module of the pinned Ray; another Ray only keeps its lines
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def say(msg: str) -> None:
    """A progress line from the training worker, once. Ray Train replaces `print` in its
    workers with one that writes the line and also logs it, so it reached the console twice;
    the process's own stderr is streamed to the driver like any worker output."""
    print(msg, file=sys.__stderr__, flush=True)


def run_training(cfg: TrainConfig, log: Callable[[str], None] | None = None) -> dict:
    """Train (or resume) and return the best epoch's metrics."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    # Workers do not run in this process's folder: every path they get is absolute. "auto"
    # becomes the cached ImageNet file, or None with a warning, here on the driver, once.
    state = load_resume_state(cfg)
    if state is None:
        pretrained = resolve_pretrained(cfg.arch, cfg.pretrained, log)
    else:  # the resumed weights come from last.pt; the record keeps what the run started from
        pretrained = state.get("config", {}).get("pretrained")
    if pretrained not in (None, "", "none", "imagenet"):
        pretrained = os.path.abspath(os.path.expanduser(pretrained))
    cfg = dataclasses.replace(
        cfg,
        data_dir=os.path.abspath(cfg.data_dir),
        run_dir=os.path.abspath(cfg.run_dir),
        val_dir=os.path.abspath(cfg.val_dir) if cfg.val_dir else None,
        pretrained=pretrained,
    )
    # Fail early, on the driver, with a clear message: not in every worker after Ray's retries.
    cfg, blended = resolve_self_blend(cfg, log)
    preprocess = preprocess_for(cfg)  # also an --image-size that --no-resize cannot give
    os.makedirs(cfg.run_dir, exist_ok=True)
    if state is not None:
        repair_run_dir(cfg.run_dir, state)
        if int(state["epoch"]) + 1 >= cfg.epochs:
            log(f"{cfg.run_dir} already finished {cfg.epochs} epochs; nothing to do")
            return best_metrics(cfg.run_dir)
    elif pretrained not in (None, "", "none"):
        build_model(cfg.arch, pretrained)  # a missing file, or offline "imagenet": fail here
    init_ray()
    landmarks = None
    if blended and cfg.blend_mask == "outline":
        # the faces' outlines for the blend masks, found once on the cluster's CPUs
        landmarks = os.path.join(cfg.run_dir, "landmarks.json")
        find_landmarks(blended, landmarks, log)
    use_gpu = ray.cluster_resources().get("GPU", 0) >= cfg.gpus_per_worker * cfg.workers > 0
    resources = {"CPU": cfg.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    else:
        log("no GPU found: training on CPU, which is slow")
    trainer = ray.train.torch.TorchTrainer(
        train_loop,
        train_loop_config={
            "cfg": cfg.to_dict(),
            "preprocess": preprocess.to_dict(),
            "landmarks": landmarks,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name="ray",
            storage_path=cfg.run_dir,
            # A worker that dies (OOM, lost node) restarts the group; the loop resumes from
            # last.pt, so at most the epoch in progress is repeated.
            failure_config=ray.train.FailureConfig(max_failures=2),
            # Ray Train's own INFO lines (resource requests, each report again as a dict) would
            # bury the one line an epoch that the loop prints; its warnings still show.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    trainer.fit()
    return best_metrics(cfg.run_dir)


def resolve_self_blend(cfg: TrainConfig, log: Callable[[str], None]):
    """(cfg with self_blend decided, the real images whose blends the run makes). A training
    folder without fakes trains on self-blends of its real faces unless self-blending was
    turned off, which is refused: a model that never saw a fake cannot learn to find one."""
    train_dir, val_dir = split_dirs(cfg)
    train = list_images(train_dir, need_fakes=False)
    val = list_images(val_dir, need_fakes=False)
    has_fakes = any(y for _, y in train)
    if not has_fakes and cfg.self_blend is False:
        raise ValueError(
            f"{train_dir} holds real faces only and self-blending is off (--no-self-blend): a "
            "model that never saw a fake cannot learn to find one. Add fake/ images, or train "
            "without --no-self-blend (self-blended fakes made from the real faces)"
        )
    self_blend = cfg.self_blend if cfg.self_blend is not None else not has_fakes
    if not has_fakes:
        log(
            f"no fake images in {train_dir}: training on its {len(train)} real faces and a "
            "self-blended fake of each (a new blend every epoch)"
        )
    val_fakes = any(y for _, y in val)
    if not val_fakes:
        if not self_blend:
            raise ValueError(
                f"{val_dir}: found {len(val)} real and 0 fake images to validate on; add fake/ "
                "images (or --self-blend: validate against blends of the real faces)"
            )
        log(f"no fake images in {val_dir}: validating against a seeded blend of each real face")
    cfg = dataclasses.replace(cfg, self_blend=self_blend)
    if not self_blend:
        return cfg, []
    reals = [p for p, y in train if y == 0]
    return cfg, reals + ([] if val_fakes else [p for p, y in val if y == 0])


def find_landmarks(paths: list[str], cache: str, log: Callable[[str], None]) -> None:
    """Writes {path: face_landmarks or None} for `paths` into the JSON file `cache`, finding
    with Ray Data only those the file does not already hold for that file size and time."""
    import json

    known = read_landmarks(cache, raw=True)
    stamp = {p: f"{os.path.getsize(p)}:{os.path.getmtime(p)}" for p in paths}
    todo = [p for p in paths if known.get(p, {}).get("stamp") != stamp[p]]
    if todo:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False  # the one line below says it
        started = time.monotonic()
        rows = (
            ray.data.from_items([{"path": p} for p in todo])
            .map_batches(_landmark_batch, batch_size=64, batch_format="pandas")
            .take_all()
        )
        for row in rows:
            known[row["path"]] = {"stamp": stamp[row["path"]], "face": json.loads(row["face"])}
        faces = [known[row["path"]]["face"] for row in rows]
        found = sum(1 for face in faces if face)
        eyes = sum(1 for face in faces if face and face["eyes"])
        missed = (
            f"; {len(todo) - found} without a face blend in an ellipse" if found < len(todo) else ""
        )
        log(
            f"face outlines for the blends: a face in {found} of {len(todo)} images, both eyes "
            f"in {eyes} ({time.monotonic() - started:.0f} s){missed}"
        )
    _atomic_text(cache, json.dumps({p: known[p] for p in paths}))


def _landmark_batch(batch):
    import json

    from pipeline.selfblend import face_landmarks, landmark_detector
    from pipeline.training import load_image

    detector = landmark_detector()
    faces = []
    for path in batch["path"]:
        try:
            img = np.ascontiguousarray(load_image(path).permute(1, 2, 0).numpy())
            faces.append(json.dumps(face_landmarks(img, detector)))
        except ValueError:  # an image that does not decode fails later, with its name
            faces.append("null")
    batch["face"] = faces
    return batch


def read_landmarks(path: str | None, raw: bool = False) -> dict:
    """{path: landmarks} from find_landmarks' file ({} without one); `raw`: with stamps."""
    import json

    if not path or not os.path.isfile(path):
        return {}
    with open(path) as f:
        known = json.load(f)
    return known if raw else {p: v["face"] for p, v in known.items()}


def best_metrics(run_dir: str) -> dict:
    best = load_checkpoint(os.path.join(run_dir, "best.pt"))
    return {**best["metrics"], "checkpoint": os.path.join(run_dir, "best.pt")}


if __name__ == "__main__":
    from jobs.cli import train

    train(prog_name="python -m jobs.train")
