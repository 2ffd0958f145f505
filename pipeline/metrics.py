"""Detection metrics: accuracy, ROC AUC, equal error rate and threshold choice (scikit-learn).

Labels: 1 = fake, 0 = real. Scores: probability of fake.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    return y, s


def auc(labels, scores) -> float:
    y, s = _arrays(labels, scores)
    if len(np.unique(y)) < 2:
        return math.nan  # undefined with one class
    return float(roc_auc_score(y, s))


def eer(labels, scores) -> tuple[float, float]:
    """(equal error rate, the threshold where false-positive and false-negative rates meet)."""
    y, s = _arrays(labels, scores)
    if len(np.unique(y)) < 2:
        return math.nan, math.nan
    fpr, tpr, thresholds = roc_curve(y, s)
    # fnr - fpr falls from 1 to -1 along the ROC curve: the EER is where it crosses 0, found
    # by interpolating between the two points around the crossing (the nearest point alone
    # can sit on either side, which on a few samples can read as worse than chance).
    d = (1.0 - tpr) - fpr
    i = int(np.argmax(d <= 0))
    if i == 0:
        return float(fpr[0]), float(min(1.0, thresholds[0]))
    t = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1])), float(min(1.0, thresholds[i]))


def choose_threshold(labels, scores) -> float:
    """The threshold that maximises balanced accuracy (Youden's J) on these scores; 0.5 when
    it cannot be chosen (one class only)."""
    y, s = _arrays(labels, scores)
    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, s)
    i = int(np.argmax(tpr - fpr))
    return float(min(1.0, max(0.0, thresholds[i])))


def summary(labels, scores, threshold: float | None, predicted=None) -> dict:
    """n, accuracy, auc, eer, threshold and the confusion matrix, as plain JSON-able values.
    Predictions are scores at or above `threshold`, or `predicted` (1 = fake) when given."""
    y, s = _arrays(labels, scores)
    if predicted is None:
        pred = (s >= threshold).astype(np.int64)
    else:
        pred = np.asarray(predicted, dtype=np.int64).ravel()
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    rate, _ = eer(y, s)
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else math.nan,
        "auc": auc(y, s),
        "eer": rate,
        "threshold": None if threshold is None else float(threshold),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }
