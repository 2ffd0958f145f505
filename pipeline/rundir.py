"""A training run's folder: last.pt and best.pt, metrics.csv and curves.png, and what a
resumed run reads back (the settings it may not change, the state it goes on from, the files a
kill left undone). Plain Python: the Ray Train job (jobs.train) calls it from rank 0."""

from __future__ import annotations

import csv
import io
import os
import tempfile

import torch

from pipeline.config import Preprocess, TrainConfig
from pipeline.model import load_checkpoint, model_from_checkpoint, save_checkpoint

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


def atomic_text(path: str, text: str) -> None:
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
    atomic_text(os.path.join(run_dir, "metrics.csv"), buf.getvalue())
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


# What best.pt holds beside the weights (last.pt holds them too, and what a resumed run needs):
# save_epoch writes them, repair_run_dir copies them from last.pt.
BEST_KEYS = ("preprocess", "arch", "recipe", "threshold", "epoch", "phase", "metrics", "config")


def repair_run_dir(run_dir: str, state: dict) -> None:
    """What a kill between last.pt and the files written after it leaves undone: best.pt of
    the epoch last.pt names as the best, and metrics.csv and curves.png of its history."""
    best_epoch = state.get("best_epoch")
    best_path = os.path.join(run_dir, "best.pt")
    if best_epoch is not None and best_epoch == state["epoch"]:
        best = load_checkpoint(best_path) if os.path.exists(best_path) else None
        if best is None or best.get("epoch") != best_epoch:
            extra = {k: state[k] for k in BEST_KEYS if k in state}
            save_checkpoint(best_path, model_from_checkpoint(state), **extra)
    if state.get("history"):
        write_metrics(run_dir, state["history"])


def best_metrics(run_dir: str) -> dict:
    best = load_checkpoint(os.path.join(run_dir, "best.pt"))
    return {**best["metrics"], "checkpoint": os.path.join(run_dir, "best.pt")}


def cpu_state(state: dict) -> dict:
    return {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in state.items()}


def save_epoch(
    cfg: TrainConfig,
    scored: torch.nn.Module,
    *,
    preprocess: Preprocess,
    threshold: float,
    epoch: int,
    phase: str,
    history: list[dict],
    best: tuple[float, int | None],
    optimizer,
    scheduler,
    resume_only: dict,
) -> None:
    """An epoch's end in the run folder: last.pt (all a resumed run needs), best.pt when this
    epoch is the best so far (`best`: the best AUC and its epoch), metrics.csv and curves.png.
    `scored` is what the scan will score with (the averaged weights with --ema); `resume_only`
    holds state dicts that a resumed run needs and a scan does not (a boundary head, the
    training weights under an average)."""
    best_auc, best_epoch = best
    common = {
        "preprocess": preprocess,
        "arch": cfg.arch,
        "recipe": cfg.recipe,
        "threshold": threshold,
        "epoch": epoch,
        "phase": phase,
        "metrics": history[-1],
        "config": cfg.to_dict(),
    }
    resume_only = {k: cpu_state(v) if isinstance(v, dict) else v for k, v in resume_only.items()}
    # last.pt first: a kill before best.pt is written leaves last.pt saying that this epoch is
    # the best, and repair_run_dir writes best.pt from it. (best.pt first could leave a best.pt
    # of an epoch that the resumed run trains again differently.)
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
    if best_epoch == epoch:
        best_pt = {k: common[k] for k in BEST_KEYS}
        save_checkpoint(os.path.join(cfg.run_dir, "best.pt"), scored, **best_pt)
    write_metrics(cfg.run_dir, history)
