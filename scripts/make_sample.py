"""Build a small sample of face videos from real photos that installed packages ship, with real
clips and manipulated ones (face swaps between the two people, and self-blended faces), plus a
clip without a face and two broken files, so a scan shows every kind of report row.

    python scripts/make_sample.py OUT_DIR

The photos: Grace Hopper (matplotlib's sample data) and Eileen Collins (scikit-image's
`astronaut`). Clips move and zoom a little, as a handheld camera would.
"""

from __future__ import annotations

import os

import click
import cv2
import matplotlib
import numpy as np

from pipeline.config import Preprocess
from pipeline.faces import make_detector
from pipeline.selfblend import face_mask, self_blend

SIZE = (640, 480)
FPS = 15.0


def portraits() -> dict[str, np.ndarray]:
    """Real face photos (BGR) from installed packages."""
    import skimage.data

    folder = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    hopper = cv2.imread(os.path.join(folder, "grace_hopper.jpg"))
    if hopper is None:
        raise click.ClickException(f"sample photo not found in {folder}")
    collins = cv2.cvtColor(skimage.data.astronaut()[10:250, 110:330], cv2.COLOR_RGB2BGR)
    return {"hopper": hopper, "collins": collins}


def face_box(photo: np.ndarray) -> tuple[int, int, int, int]:
    boxes = make_detector(Preprocess(detector="haar")).detect(photo)
    if not boxes:
        raise click.ClickException("no face found in a sample photo")
    b = max(boxes, key=lambda b: b.area)
    return b.x, b.y, b.w, b.h


def swap_face(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """A classical face swap: the source's face, resized onto the target's face box, colour-
    matched and blended in with a soft mask."""
    tx, ty, tw, th = face_box(target)
    sx, sy, sw, sh = face_box(source)
    face = cv2.resize(source[sy : sy + sh, sx : sx + sw], (tw, th), interpolation=cv2.INTER_AREA)
    region = target[ty : ty + th, tx : tx + tw].astype(np.float32)
    face = face.astype(np.float32)
    face = (face - face.mean((0, 1))) / (face.std((0, 1)) + 1e-6) * region.std((0, 1))
    face += region.mean((0, 1))
    mask = face_mask(th, tw, np.random.default_rng(1))[..., None]
    out = target.copy()
    out[ty : ty + th, tx : tx + tw] = np.clip(mask * face + (1 - mask) * region, 0, 255)
    return out


def blend_face(photo: np.ndarray, seed: int) -> np.ndarray:
    """A self-blended face: the face region blended with an altered copy of itself."""
    x, y, w, h = face_box(photo)
    pad = w // 4
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(photo.shape[1], x + w + pad), min(photo.shape[0], y + h + pad)
    out = photo.copy()
    out[y0:y1, x0:x1] = self_blend(photo[y0:y1, x0:x1], np.random.default_rng(seed))
    return out


def write_clip(path: str, photo: np.ndarray, frames: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    w, h = SIZE
    background = rng.integers(40, 160, 3).tolist()
    zoom, drift = rng.uniform(0.0, 0.06), rng.uniform(4, 16)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    for i in range(frames):
        t = i / max(1, frames - 1)
        ph = int(h * (0.85 + zoom * np.sin(2 * np.pi * t)))
        pw = min(w, int(photo.shape[1] * ph / photo.shape[0]))
        small = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
        frame = np.full((h, w, 3), background, np.uint8)
        x = int(np.clip((w - pw) // 2 + drift * np.sin(2 * np.pi * t), 0, w - pw))
        y = (h - ph) // 2
        frame[y : y + ph, x : x + pw] = small
        writer.write(frame)
    writer.release()
    return path


def write_scene(path: str, frames: int) -> str:
    w, h = SIZE
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    for i in range(frames):
        frame = np.full((h, w, 3), (60, 130, 80), np.uint8)
        cv2.circle(frame, ((i * 9) % (w - 60) + 30, h // 2), 30, (30, 200, 240), -1)
        writer.write(frame)
    writer.release()
    return path


def make_sample(out: str, clips: int = 2, frames: int = 45, seed: int = 0, extras: bool = True):
    """`clips` real clips per person under out/real, as many manipulated ones under out/fake
    (half swaps, half self-blends); with `extras`, a no-face clip and two broken files under
    out/other. Returns the paths written."""
    people = portraits()
    names = sorted(people)
    fakes = []
    for i, name in enumerate(names):
        other = people[names[(i + 1) % len(names)]]
        fakes += [(f"{name}_swap", swap_face(people[name], other))]
        fakes += [(f"{name}_blend", blend_face(people[name], seed + i))]
    paths = []
    for label, sources in (("real", list(people.items())), ("fake", fakes)):
        os.makedirs(os.path.join(out, label), exist_ok=True)
        for k in range(clips):
            for j, (name, photo) in enumerate(sources):
                if label == "fake" and k * len(sources) + j >= clips * len(people):
                    continue
                path = os.path.join(out, label, f"{name}_{seed}_{k}.mp4")
                paths.append(write_clip(path, photo, frames, seed * 1000 + k * 10 + j))
    if extras:
        other = os.path.join(out, "other")
        os.makedirs(other, exist_ok=True)
        paths.append(write_scene(os.path.join(other, "no_face_scene.mp4"), frames))
        with open(paths[0], "rb") as f:
            data = f.read()
        broken = os.path.join(other, "broken.mp4")
        with open(broken, "wb") as f:
            f.write(data[: len(data) // 3])  # the mp4 index sits at the end: unreadable
        paths.append(broken)
        empty = os.path.join(other, "empty.mov")
        open(empty, "wb").close()
        paths.append(empty)
    return paths


@click.command()
@click.argument("out")
@click.option("--clips", default=2, show_default=True, help="Real clips per person.")
@click.option("--frames", default=45, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out, clips, frames, seed):
    for path in make_sample(out, clips, frames, seed):
        click.echo(path)


if __name__ == "__main__":
    main()
