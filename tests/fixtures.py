"""Test fixtures built from real parts: real face photos, real videos written with OpenCV."""

from __future__ import annotations

import os
import struct

import cv2
import matplotlib
import numpy as np


def face_photo() -> np.ndarray:
    """Grace Hopper, a real face photo that matplotlib ships (BGR, 600 x 512)."""
    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    img = cv2.imread(os.path.join(path, "grace_hopper.jpg"))
    assert img is not None
    return img


def face_frame(
    width: int = 320, height: int = 240, shift: int = 0, photo: np.ndarray | None = None
) -> np.ndarray:
    """A frame with the photo, scaled to 90% of the frame height, on a grey background."""
    photo = face_photo() if photo is None else photo
    ph = int(height * 0.9)
    pw = int(photo.shape[1] * ph / photo.shape[0])
    small = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 90, np.uint8)
    x = max(0, min(width - pw, (width - pw) // 2 + shift))
    y = (height - ph) // 2
    frame[y : y + ph, x : x + pw] = small
    return frame


def write_video(
    path: str | os.PathLike,
    frames: int = 24,
    width: int = 320,
    height: int = 240,
    fps: float = 12.0,
    face: bool = True,
) -> str:
    """An mp4 (mp4v) with the face drifting a little from frame to frame, or without a face: a
    plain scene with a moving box."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), path
    photo = face_photo()
    for i in range(frames):
        if face:
            frame = face_frame(width, height, shift=(i % 9) - 4, photo=photo)
        else:
            frame = np.full((height, width, 3), (40, 120, 60), np.uint8)
            x = (i * 7) % max(1, width - 40)
            cv2.rectangle(frame, (x, height // 3), (x + 40, height // 3 + 40), (200, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def wide_shot_frame(shift: int = 0) -> np.ndarray:
    """A 1080p wide shot: the photo 320 px tall, so the face is about 100 px (5% of the width),
    too small to be found in the frame downscaled to the default 480 px."""
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    frame[380:700, 640 + shift : 928 + shift] = face_frame(288, 320)
    return frame


def write_wide_shot(path: str | os.PathLike, frames: int = 6) -> str:
    """A video of `wide_shot_frame`s, the person drifting a little."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (1920, 1080))
    assert writer.isOpened(), path
    for i in range(frames):
        writer.write(wide_shot_frame(shift=4 * i))
    writer.release()
    return path


def write_phone_video(path: str | os.PathLike, frames: int = 24, rotation: bool = True) -> str:
    """A portrait phone clip as phones store it: landscape frames (352 x 272) holding the face
    on its side, and, with `rotation`, the track's display matrix (the mp4 `tkhd` box) saying
    "turn 90 degrees clockwise to show" (what `ffmpeg -metadata:s:v rotate=90` writes)."""
    path = os.fspath(path)
    upright = [face_frame(272, 352, shift=(i % 9) - 4) for i in range(frames)]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (352, 272))
    assert writer.isOpened(), path
    for frame in upright:
        writer.write(cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE))
    writer.release()
    if rotation:
        with open(path, "rb") as f:
            data = bytearray(f.read())
        at = data.index(b"tkhd") + 4  # version, flags, then (version 0) 20 + 16 bytes
        assert data[at] == 0, "tkhd version 0 expected"
        matrix = at + 4 + 20 + 16
        identity = struct.pack(">9i", 1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)
        assert data[matrix : matrix + 36] == identity
        data[matrix : matrix + 36] = struct.pack(
            ">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30
        )
        with open(path, "wb") as f:
            f.write(data)
    return path


def write_phone_photo(path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """A portrait phone photo as phones store it: a sideways JPEG whose EXIF orientation (6) says
    "turn 90 degrees clockwise to show". Returns the path and the upright picture (BGR)."""
    from PIL import Image

    path = os.fspath(path)
    upright = face_frame(272, 352)
    img = Image.fromarray(cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)[:, :, ::-1])
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation
    img.save(path, quality=95, exif=exif.tobytes())
    return path, upright


def write_face_images(folder, n_real: int = 8, n_fake: int = 8, size: int = 64, seed: int = 0):
    """folder/real: jittered crops of a real face photo; folder/fake: self-blended versions."""
    from pipeline.selfblend import self_blend

    rng = np.random.default_rng(seed)
    photo = face_photo()
    h, w = photo.shape[:2]
    for label, n in (("real", n_real), ("fake", n_fake)):
        os.makedirs(os.path.join(folder, label), exist_ok=True)
        for i in range(n):
            side = int(min(h, w) * rng.uniform(0.7, 0.95))
            x, y = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
            img = cv2.resize(photo[y : y + side, x : x + side], (size, size))
            img = np.clip(img * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
            if label == "fake":
                img = self_blend(img, rng)
            cv2.imwrite(os.path.join(folder, label, f"{i:03d}.png"), img)
    return str(folder)
