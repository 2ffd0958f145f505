"""Face scores -> one video score, label and status.

Strategies (`--aggregate`):
- `confident` (default): the DFDC winning entry's rule. When many faces are confidently fake
  (more than 11 of them and more than 40% of all faces score above 0.8), the video's score is the
  mean of those confident fakes, so a short manipulated stretch is not averaged away; when over
  90% of faces score below 0.2, the mean of those; otherwise the plain mean.
- `mean`: every face counts the same.
- `max`: the most suspicious face; the most sensitive and the most false-positive-prone.
- `topk`: the mean of the k highest face scores (`--top-k`, default 8).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.config import AGGREGATES

CONFIDENT_FAKE = 0.8
CONFIDENT_REAL = 0.2


def confident(scores: np.ndarray) -> float:
    n = len(scores)
    fakes = scores > CONFIDENT_FAKE
    if fakes.sum() > n // 2.5 and fakes.sum() > 11:
        return float(scores[fakes].mean())
    reals = scores < CONFIDENT_REAL
    if reals.sum() > 0.9 * n:
        return float(scores[reals].mean())
    return float(scores.mean())


def aggregate(scores, method: str = "confident", top_k: int = 8) -> float:
    """One score for a video from its face scores; NaN when there are none."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        return math.nan
    if method == "confident":
        return confident(scores)
    if method == "mean":
        return float(scores.mean())
    if method == "max":
        return float(scores.max())
    if method == "topk":
        k = max(1, min(top_k, scores.size))
        return float(np.sort(scores)[-k:].mean())
    raise ValueError(f"unknown aggregate {method!r}; choose from {AGGREGATES}")


def label_for(score: float, threshold: float) -> str | None:
    """'fake' at or above the threshold, 'real' below it, None without a score."""
    if score is None or not math.isfinite(score):
        return None
    return "fake" if score >= threshold else "real"
