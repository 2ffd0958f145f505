"""Face crops cut on the scoring device (a GPU) from frames already there, for the scan's batch
detector: the same two crops as pipeline.faces cuts on the CPU, from the same boxes and angles.

- "native": the window of `native_window`, each output pixel the mean of a k x k block (exactly
  the CPU's numbers: a float mean of k * k whole numbers is exact where it ends in a half, and
  both round halves to even).
- "resize": the rotated, scaled square of `crop_face`, sampled bilinearly with
  `grid_sample` (black outside the frame), after the same area shrink around the face when it
  shrinks more than 2x. On average within about 2 grey levels of OpenCV's crop (0.0-0.6 where
  no shrink or an even one; up to 2.1 where OpenCV's area resize and torch's split pixels
  differently at an uneven factor).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import Preprocess
from pipeline.faces import Box, face_square, native_placement, reach, warp_matrix


def cut_faces(
    frames: torch.Tensor, faces: list[tuple[int, Box, float]], preprocess: Preprocess
) -> np.ndarray:
    """Crops (M, S, S, 3) RGB uint8 of `faces` (frame index into `frames`, full-frame box,
    angle), cut from `frames` (N, H, W, 3) BGR uint8 on their device."""
    size = preprocess.input_size
    if not faces:
        return np.empty((0, size, size, 3), np.uint8)
    cut = _native if preprocess.crop == "native" else _resized
    crops = torch.stack([cut(frames[i], box, angle, preprocess) for i, box, angle in faces])
    return crops.flip(-1).cpu().numpy()  # BGR -> RGB


def _native(frame: torch.Tensor, box: Box, angle: float, pre: Preprocess) -> torch.Tensor:
    size = pre.input_size
    k, x0, y0, (fx0, fy0, fx1, fy1) = native_placement(box, size, pre.margin, frame.shape)
    window = torch.zeros((size * k, size * k, 3), dtype=torch.float32, device=frame.device)
    if fx1 > fx0 and fy1 > fy0:
        window[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = frame[fy0:fy1, fx0:fx1].float()
    if k > 1:
        window = window.reshape(size, k, size, k, 3).mean(dim=(1, 3))
    return window.round().to(torch.uint8)


def _resized(frame: torch.Tensor, box: Box, angle: float, pre: Preprocess) -> torch.Tensor:
    size = pre.input_size
    cx, cy, side = face_square(box, pre.margin)
    # Only the region the rotated square can reach becomes float: a whole 4K frame per face
    # would be 100 MB. Outside the frame stays black.
    x0, y0, x1, y1 = reach(frame.shape, cx, cy, side)
    if x1 == x0 or y1 == y0:  # the square lies wholly outside the frame
        return torch.zeros((size, size, 3), dtype=torch.uint8, device=frame.device)
    image = frame[y0:y1, x0:x1].permute(2, 0, 1)[None].float()  # (1, 3, h, w)
    cx, cy = cx - x0, cy - y0
    if size / side < 0.5:  # as faces._shrink_around: area-shrink the region around the face
        factor = size / side
        sw, sh = max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor))
        image = F.interpolate(image, size=(sh, sw), mode="area")
        fx, fy = sw / (x1 - x0), sh / (y1 - y0)
        cx, cy, side = cx * fx, cy * fy, side * (fx + fy) / 2.0
    m = warp_matrix(cx, cy, angle, size, side)
    inverse = torch.tensor(cv2.invertAffineTransform(m), dtype=torch.float32, device=frame.device)
    # Source pixel of every output pixel (OpenCV's convention: pixel centres at whole numbers),
    # normalised for grid_sample with align_corners=True.
    ys, xs = torch.meshgrid(
        torch.arange(size, device=frame.device, dtype=torch.float32),
        torch.arange(size, device=frame.device, dtype=torch.float32),
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ inverse.T  # (S, S, 2)
    h, w = image.shape[-2:]
    grid = torch.stack(
        [2 * points[..., 0] / max(1, w - 1) - 1, 2 * points[..., 1] / max(1, h - 1) - 1], -1
    )
    out = F.grid_sample(image, grid[None], mode="bilinear", padding_mode="zeros",
                        align_corners=True)  # fmt: skip
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)


def to_device(frames: np.ndarray, device) -> torch.Tensor:
    """(N, H, W, 3) uint8 frames on `device` (used at once: no pinned copy to overlap)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device)
