"""Averaging several models: is a committee of trained checkpoints worth its cost?

    python benchmarks/bench_average.py runs/quality/RUN_A/last.pt runs/quality/RUN_B/last.pt

Scores the val split of every labelled face set with each checkpoint (`deepfake evaluate`'s
code: each model prepares the faces as it was trained to), then with the average of the
models' logits for every group of two or more of them, and prints one JSON line per model or
group (frame AUC per set, mean, minimum) and a Markdown table. A committee of N models costs
N times the scoring of one; the table says what it buys.
"""

from __future__ import annotations

import itertools
import json
import os

import click
import numpy as np
from bench_quality import LABELLED_SETS, data_option, require_face_data  # this folder

from pipeline.evaluation import score_images
from pipeline.metrics import auc
from pipeline.model import load_checkpoint


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def row(name: str, aucs: dict[str, float]) -> dict:
    values = list(aucs.values())
    return {
        "models": name,
        "val_auc": {s: round(a, 4) for s, a in aucs.items()},
        "mean_auc": round(float(np.mean(values)), 4),
        "min_auc": round(float(min(values)), 4),
    }


@click.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(exists=True))
@data_option
def main(checkpoints, data):
    if len(checkpoints) < 2:
        raise click.UsageError("give two checkpoints or more")
    require_face_data(data)
    names = [os.path.basename(os.path.dirname(os.path.abspath(c))) or c for c in checkpoints]
    labels, logits = {}, {}  # set -> labels; (model, set) -> logits
    rows = []
    for name, path in zip(names, checkpoints, strict=True):
        ckpt = load_checkpoint(path)
        aucs = {}
        for s in LABELLED_SETS:
            paths, y, p = score_images(ckpt, os.path.join(data, s, "val"))
            # every model lists the same files in the same order (list_images sorts them)
            labels.setdefault(s, (paths, np.asarray(y)))
            assert labels[s][0] == paths, "the models scored different files"
            logits[name, s] = logit(p)
            aucs[s] = auc(labels[s][1], p)
        rows.append(row(name, aucs))
        print(json.dumps(rows[-1]), flush=True)
    for size in range(2, len(names) + 1):
        for group in itertools.combinations(names, size):
            aucs = {
                s: auc(labels[s][1], np.mean([logits[m, s] for m in group], axis=0))
                for s in LABELLED_SETS
            }
            rows.append(row(" + ".join(group), aucs))
            print(json.dumps(rows[-1]), flush=True)
    short = [s.split("_")[0] for s in LABELLED_SETS]
    print("| models | " + " | ".join(f"{s} AUC" for s in short) + " | mean | min |")
    print("|---|" + "---|" * (len(short) + 2))
    for r in rows:
        cells = [f"{r['val_auc'][s]:.3f}" for s in LABELLED_SETS]
        print(f"| {r['models']} | " + " | ".join(cells) + f" | {r['mean_auc']:.3f} | "
              f"{r['min_auc']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
