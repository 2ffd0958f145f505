"""Scoring: face crops of many videos -> face scores on one device -> video scores.

`Scorer` holds the model on its device. On CUDA it runs in bf16 autocast with channels_last;
crops travel to the GPU as uint8 (a quarter of the bytes of float32) and are normalised there.
`score_batch` takes a batch of rows from the extraction stage (a dict of column arrays, as Ray
Data hands it over) and returns the scored rows, with the video score computed right there, so
no shuffle or groupby is ever needed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pipeline.aggregate import aggregate, label_for
from pipeline.config import Preprocess
from pipeline.extract import STATUS_OK, unpack_crops

# Columns of the extraction rows that the scored rows do not carry on.
DROPPED = ("crops", "crop_size")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Scorer:
    def __init__(
        self,
        model: nn.Module,
        preprocess: Preprocess,
        device: str | torch.device | None = None,
        max_batch: int = 256,
    ):
        self.device = torch.device(device) if device else default_device()
        self.cuda = self.device.type == "cuda"
        self.preprocess = preprocess
        self.max_batch = max_batch
        model = model.eval().to(self.device)
        if self.cuda:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(preprocess.mean, device=self.device).view(shape) * 255.0
        self.std = torch.tensor(preprocess.std, device=self.device).view(shape) * 255.0

    @torch.inference_mode()
    def score(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N,) float32 probabilities of 'fake'."""
        if len(crops) == 0:
            return np.empty(0, np.float32)
        out = []
        for start in range(0, len(crops), self.max_batch):
            x = torch.from_numpy(np.ascontiguousarray(crops[start : start + self.max_batch]))
            if self.cuda:
                x = x.pin_memory().to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float().sub_(self.mean).div_(self.std)
            if self.cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
                logits = self.model(x)
            out.append(torch.sigmoid(logits.float()).flatten().cpu())
        return torch.cat(out).numpy()


def score_batch(
    batch: dict[str, np.ndarray],
    scorer: Scorer,
    *,
    threshold: float,
    method: str = "confident",
    top_k: int = 8,
    model_id: str = "",
) -> dict[str, list]:
    """Score every crop of every video in the batch in as few forward passes as the scorer's
    batch allows, then give each video its score, label and face scores."""
    n = len(batch["path"])
    crop_size = int(scorer.preprocess.input_size)
    per_video = [
        unpack_crops(batch["crops"][i], crop_size)
        if batch["status"][i] == STATUS_OK
        else unpack_crops(b"", crop_size)
        for i in range(n)
    ]
    counts = [len(c) for c in per_video]
    scores = scorer.score(np.concatenate(per_video)) if sum(counts) else np.empty(0, np.float32)
    out: dict[str, list] = {k: list(v) for k, v in batch.items() if k not in DROPPED}
    out.update(fake_score=[], label=[], faces_scored=[], face_scores=[], model_id=[model_id] * n)
    start = 0
    for count in counts:
        mine = scores[start : start + count]
        start += count
        video_score = aggregate(mine, method, top_k) if count else math.nan
        out["fake_score"].append(video_score)
        out["label"].append(label_for(video_score, threshold) or "")
        out["faces_scored"].append(count)
        out["face_scores"].append(mine.astype(np.float32).tobytes())
    return out
