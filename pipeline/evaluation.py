"""Evaluate a checkpoint on a {real,fake} image folder, or a scan report against video labels."""

from __future__ import annotations

import math
import os

from torch.utils.data import DataLoader

from pipeline.config import parse_settings
from pipeline.faceset import labelled_videos
from pipeline.metrics import summary
from pipeline.model import load_checkpoint, model_from_checkpoint
from pipeline.reports import load_videos
from pipeline.scoring import default_device
from pipeline.training import FaceImages, eval_transform, list_images, predict


def score_images(ckpt: dict, data_dir: str, batch_size: int = 64):
    """(paths, labels, probabilities of fake) of every image under data_dir/{real,fake}, each
    prepared and scored as validation in training prepares and scores it (test-time
    augmentation included)."""
    device = default_device()
    model = model_from_checkpoint(ckpt).to(device)
    resize = ckpt.get("config", {}).get("resize", True)
    items = list_images(data_dir)
    dataset = FaceImages(items, eval_transform(ckpt["preprocess"], resize))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=min(4, os.cpu_count() or 1))
    labels, scores, _ = predict(model, loader, device, ckpt["preprocess"].tta)
    return [p for p, _ in items], labels, scores


def evaluate_images(
    checkpoint: str, data_dir: str, batch_size: int = 64, threshold: float | None = None
) -> dict:
    ckpt = load_checkpoint(checkpoint)
    _, labels, scores = score_images(ckpt, data_dir, batch_size)
    threshold = float(ckpt["threshold"]) if threshold is None else threshold
    return {**summary(labels, scores, threshold), "model_id": ckpt["model_id"]}


def evaluate_report(report_dir: str, labels_csv: str, threshold: float | None = None) -> dict:
    """Video-level figures of a scan report. Videos the scan could not score (no face, error,
    missing) are counted, not guessed: they are left out of the metrics. Without `threshold`,
    the videos' own labels are the predictions (what the scan decided, at full precision,
    whatever threshold each run used); `threshold` then says the scan's, when one is known."""
    truth = {os.path.abspath(p): label for p, label in labelled_videos("", labels_csv)}
    videos = load_videos(report_dir)
    videos = videos[videos.path.isin(truth)]
    scored = videos[videos.status == "ok"]
    labels = [1 if truth[p] == "fake" else 0 for p in scored.path]
    predicted = None
    if threshold is None:
        predicted = (scored.label == "fake").to_numpy()
        threshold = scan_threshold(scored.settings)
    if len(scored):
        scores = scored.fake_score.to_numpy(dtype=float)
        out = summary(labels, scores, threshold, predicted)
    else:  # nothing to measure: say how many there were and why, not a library's error
        out = {"n": 0, "accuracy": math.nan, "auc": math.nan, "eer": math.nan}
        out["threshold"] = threshold
        out["confusion"] = {"tn": 0, "fp": 0, "fn": 0, "tp": 0}
    out["unscored"] = int(len(videos) - len(scored))
    out["missing_from_report"] = int(len(truth) - len(videos))
    return out


def scan_threshold(settings) -> float | None:
    """The one threshold in the scan settings of these rows; None when they name several or
    none (rows written before the settings were recorded)."""
    words = (parse_settings(text) for text in settings.dropna())
    found = {float(w["threshold"]) for w in words if "threshold" in w}
    return found.pop() if len(found) == 1 else None
