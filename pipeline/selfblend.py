"""Self-blended fakes: a real face blended with a slightly altered copy of itself.

After Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022). The copy
differs from the original in colour, sharpness and a little geometry, and is pasted back inside a
soft, irregular face-shaped mask, which leaves exactly the traces a face swap leaves (a blending
boundary, a colour and frequency mismatch) without any identity change. A model trained on such
fakes learns those traces from real footage alone. Face crops are centred on the face, so the mask
is an irregular ellipse around the centre instead of a landmark hull.
"""

from __future__ import annotations

import cv2
import numpy as np


def _altered_copy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = img.astype(np.float32)
    gain = rng.uniform(0.9, 1.1, size=3)
    shift = rng.uniform(-12, 12, size=3)
    out = out * gain + shift
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=rng.uniform(0.6, 1.6))
    else:  # unsharp mask: the opposite frequency change
        blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=rng.uniform(0.8, 2.0))
        out = out + rng.uniform(0.5, 1.5) * (out - blurred)
    h, w = img.shape[:2]
    scale = rng.uniform(0.95, 1.05)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
    m[:, 2] += rng.uniform(-0.03, 0.03, size=2) * (w, h)
    out = cv2.warpAffine(out, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return out


def face_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A soft, irregular ellipse over the inner face, float32 in 0..1."""
    cx = w / 2 + rng.uniform(-0.04, 0.04) * w
    cy = h * rng.uniform(0.5, 0.58)
    ax, ay = w * rng.uniform(0.24, 0.36), h * rng.uniform(0.3, 0.42)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    radius = 1.0 + rng.uniform(-0.12, 0.12, size=angles.size)
    pts = np.stack([cx + ax * radius * np.cos(angles), cy + ay * radius * np.sin(angles)], 1)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1.0)
    k = int(max(3, min(h, w) * rng.uniform(0.05, 0.2))) | 1
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    return mask


def self_blend(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 face -> a self-blended fake of the same size."""
    h, w = img.shape[:2]
    mask = face_mask(h, w, rng) * rng.choice([0.5, 0.75, 1.0, 1.0, 1.0])
    mask = mask[..., None]
    out = mask * _altered_copy(img, rng) + (1.0 - mask) * img.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
