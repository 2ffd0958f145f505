"""The training job on Ray Train: phase 1 trains the head on a frozen backbone, phase 2 all
layers at a lower learning rate. After every epoch, rank 0 writes RUN_DIR/last.pt (model,
optimizer, scheduler, scaler, epoch, phase, metrics, history, config, preprocessing) and, when
validation AUC improves, RUN_DIR/best.pt with the threshold chosen on validation. Running the
same command again resumes after the last finished epoch.

RUN_DIR must be reachable by the rank-0 worker: local runs trivially; on a cluster, a shared
filesystem. Run it with `deepfake train` or
    ray job submit --working-dir . -- python -m jobs train DATA_DIR --out RUN_DIR
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable

import ray
import ray.train
import ray.train.torch
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from jobs.cluster import init_ray
from pipeline.config import Preprocess, TrainConfig
from pipeline.metrics import choose_threshold, summary
from pipeline.model import (
    BoundaryModel,
    add_stochastic_depth,
    build_model,
    resolve_pretrained,
)
from pipeline.rundir import (
    best_metrics,
    load_resume_state,
    repair_run_dir,
    save_epoch,
)
from pipeline.selfblend import landmark_batch
from pipeline.training import (
    fast_path,
    make_ema,
    make_optimizer,
    make_scheduler,
    predict,
    resume_schedule,
    set_phase,
    train_one_epoch,
)
from pipeline.trainplan import (
    LandmarkCache,
    describe_balance,
    loader_options,
    phase_epochs,
    phase_of,
    phase_start,
    preprocess_for,
    read_landmarks,
    resolve_self_blend,
    training_set,
    validation_set,
)


def reshuffle(loader: DataLoader, epoch: int) -> None:
    """Another shuffle and other shards every epoch with several workers: Ray's
    DistributedSampler seeds its order with the epoch it is told, and left alone it repeats
    the first epoch's batches, and each worker its own share of the images, every epoch."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


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
    landmarks = read_landmarks(loop_config.get("landmarks"))
    train_set = training_set(cfg, preprocess, landmarks)
    loader_workers = max(0, cfg.cpus_per_worker - 1)
    train_loader = DataLoader(
        train_set,
        **loader_options(cfg),
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
        val_set = validation_set(cfg, preprocess, landmarks)
        val_loader = DataLoader(val_set, batch_size=cfg.batch_size * 2, num_workers=loader_workers)

    state = load_resume_state(cfg)
    if state is not None and rank == 0:
        # Also here: Ray restarts a failed worker group inside the same job, not via the driver.
        repair_run_dir(cfg.run_dir, state)
    # A resumed run's weights come from last.pt: the --pretrained file is not needed again.
    model = build_model(cfg.arch, cfg.pretrained if state is None else None)
    add_stochastic_depth(model, cfg.drop_path)  # hooks: the checkpoint keeps the plain network
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
            resume_only = {}
            if cfg.boundary_head:  # training only: kept for a resumed run, never scored
                resume_only["boundary_head"] = trained.head.state_dict()
            if ema is not None:  # the training weights too, for a resumed run to go on from
                resume_only |= {
                    "train_model": model.state_dict(),
                    "ema_updates": int(ema.n_averaged),
                }
            save_epoch(
                cfg,
                scored,
                preprocess=preprocess,
                threshold=threshold,
                epoch=epoch,
                phase=phase,
                history=history,
                best=(best_auc, best_epoch),
                optimizer=optimizer,
                scheduler=scheduler,
                resume_only=resume_only,
            )
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
    if cfg.balance_sources:
        log(describe_balance(cfg))
    init_ray()
    landmarks = None
    if blended and cfg.blend_mask != "ellipse":
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


def find_landmarks(paths: list[str], cache: str, log: Callable[[str], None]) -> None:
    """Writes the face outlines of `paths` into the LandmarkCache file `cache`, finding with
    Ray Data only those it does not already hold for the files as they are."""
    known = LandmarkCache(cache)
    todo = known.missing(paths)
    if todo:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False  # the one line below says it
        started = time.monotonic()
        rows = (
            ray.data.from_items([{"path": p} for p in todo])
            .map_batches(landmark_batch, batch_size=64, batch_format="pandas")
            .take_all()
        )
        faces = [json.loads(row["face"]) for row in rows]
        for row, face in zip(rows, faces, strict=True):
            known.add(row["path"], face)
        found = sum(1 for face in faces if face)
        eyes = sum(1 for face in faces if face and face["eyes"])
        missed = (
            f"; {len(todo) - found} without a face blend in an ellipse" if found < len(todo) else ""
        )
        log(
            f"face outlines for the blends: a face in {found} of {len(todo)} images, both eyes "
            f"in {eyes} ({time.monotonic() - started:.0f} s){missed}"
        )
    known.save(paths)
