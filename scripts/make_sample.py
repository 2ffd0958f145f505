"""Build a small sample folder of face videos from real photos that installed packages ship.

    python scripts/make_sample.py OUT_DIR

Makes real face clips (the photo drifting and zooming a little, as a camera would), a clip
without a face, and two broken files, so a scan shows every kind of report row.
"""

from __future__ import annotations

import os
import sys

import click
import cv2
import matplotlib
import numpy as np


def sample_photos() -> list[np.ndarray]:
    folder = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    photo = cv2.imread(os.path.join(folder, "grace_hopper.jpg"))
    if photo is None:
        raise click.ClickException(f"sample photo not found in {folder}")
    return [photo, cv2.flip(photo, 1)]


def write_clip(path: str, photo: np.ndarray, frames: int, size=(480, 360), fps=15.0, zoom=0.0):
    w, h = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        t = i / max(1, frames - 1)
        scale = 0.85 + zoom * np.sin(2 * np.pi * t)
        ph = int(h * scale)
        pw = int(photo.shape[1] * ph / photo.shape[0])
        small = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
        frame = np.full((h, w, 3), 70, np.uint8)
        x = (w - pw) // 2 + int(12 * np.sin(2 * np.pi * t))
        y = (h - ph) // 2
        frame[y : y + ph, max(0, x) : max(0, x) + pw] = small[:, : w - max(0, x)]
        writer.write(frame)
    writer.release()


def write_scene(path: str, frames: int, size=(480, 360), fps=15.0):
    w, h = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        frame = np.full((h, w, 3), (60, 130, 80), np.uint8)
        x = (i * 9) % (w - 60)
        cv2.circle(frame, (x + 30, h // 2), 30, (30, 200, 240), -1)
        writer.write(frame)
    writer.release()


def make_sample(out: str, clips: int = 4, frames: int = 45) -> list[str]:
    os.makedirs(out, exist_ok=True)
    photos = sample_photos()
    paths = []
    for i in range(clips):
        path = os.path.join(out, f"clip_{i:02d}.mp4")
        write_clip(path, photos[i % len(photos)], frames, zoom=0.05 * (i % 3))
        paths.append(path)
    scene = os.path.join(out, "no_face_scene.mp4")
    write_scene(scene, frames)
    broken = os.path.join(out, "broken.mp4")
    with open(paths[0], "rb") as f:
        data = f.read()
    with open(broken, "wb") as f:
        f.write(data[: len(data) // 3])  # the mp4 index sits at the end: unreadable
    empty = os.path.join(out, "empty.mov")
    open(empty, "wb").close()
    return [*paths, scene, broken, empty]


@click.command()
@click.argument("out")
@click.option("--clips", default=4, show_default=True)
@click.option("--frames", default=45, show_default=True)
def main(out, clips, frames):
    for path in make_sample(out, clips, frames):
        click.echo(path)


if __name__ == "__main__":
    sys.exit(main())
