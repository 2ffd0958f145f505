"""Does a self-blend model see the blend, or the JPEG grid the blend breaks?

    python benchmarks/bench_blend_jpeg.py runs/quality/RUN/last.pt --data ../shared/data/faces

A blend pastes a resampled copy of the face into the face, so inside its mask the image's own
8x8 JPEG block grid is gone, while outside it stays. Any real fake that was re-encoded after it
was made (every swap in `lfw_faceswap`, at quality 70) has no such trace. This scores seeded
blends of each set's val real faces (outline masks from the scan's detector, as training makes
them) against those faces, untouched and after one JPEG re-encoding of both alike at each
`--quality`, and prints one JSON line per set and quality: a model that learned the blend keeps
its AUC; one that learned the grid falls to chance.
"""

from __future__ import annotations

import glob
import json
import os

import click
import cv2
import numpy as np
import torch
from bench_quality import REAL_SETS, data_option, require_face_data  # this folder
from torch.utils.data import DataLoader

from pipeline.metrics import auc
from pipeline.model import load_checkpoint, model_from_checkpoint
from pipeline.scoring import default_device
from pipeline.selfblend import blend, face_landmarks, jpeg_round_trip, landmark_detector
from pipeline.training import eval_transform, predict


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@data_option
@click.option("--sets", default=",".join(REAL_SETS), show_default=True)
@click.option("--faces", default=200, show_default=True, help="Val real faces per set.")
@click.option("--quality", "qualities", default="95,85,70", show_default=True)
def main(checkpoint, data, sets, faces, qualities):
    require_face_data(data)
    ckpt = load_checkpoint(checkpoint)
    device = default_device()
    model = model_from_checkpoint(ckpt).to(device)
    prepare = eval_transform(ckpt["preprocess"], ckpt.get("config", {}).get("resize", True))
    tta = ckpt["preprocess"].tta
    detector = landmark_detector()

    @torch.inference_mode()
    def scores(images: list[np.ndarray], labels: list[int]) -> np.ndarray:
        """Each image scored as `deepfake evaluate` scores a face (its TTA included)."""
        faces = [
            (prepare(torch.from_numpy(a).permute(2, 0, 1)), y)
            for a, y in zip(images, labels, strict=True)
        ]
        _, probabilities, _ = predict(model, DataLoader(faces, batch_size=32), device, tta)
        return probabilities

    for name in sets.split(","):
        paths = sorted(glob.glob(os.path.join(data, name, "val", "real", "*")))[:faces]
        reals = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths]
        fakes = [
            blend(img, np.random.default_rng((0, i)), face_landmarks(img, detector))[0]
            for i, img in enumerate(reals)
        ]
        labels = [0] * len(reals) + [1] * len(fakes)
        for q in [None] + [int(v) for v in qualities.split(",")]:
            images = reals + fakes if q is None else [jpeg_round_trip(a, q) for a in reals + fakes]
            row = {"set": name, "faces": len(reals), "jpeg_quality": q}
            row["blend_auc"] = round(auc(labels, scores(images, labels)), 4)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
