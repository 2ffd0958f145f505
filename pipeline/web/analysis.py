"""Analysis of one uploaded image or video: faces, scores, verdict, and the pictures the page
shows (boxes on the frame, Grad-CAM heatmaps, the score over time). No Flask here."""

from __future__ import annotations

import base64
import math
import threading

import cv2
import numpy as np
import pandas as pd

from pipeline.aggregate import aggregate, label_for
from pipeline.config import describe_settings
from pipeline.container import HEAD_BYTES, STILL_BRANDS, container_kind
from pipeline.discover import describe_file
from pipeline.explain import grad_cam, overlay
from pipeline.extract import STATUS_ERROR, unpack_crops, unpack_face_meta
from pipeline.faces import detect_faces, make_detector, smallest_face
from pipeline.isolate import IsolatedExtractor
from pipeline.summary import score_over_time

IMAGE_KINDS = ("jpeg", "png", "webp")
VIDEO_KINDS = ("mp4", "mov", "avi", "webm", "mts", "mpg", "wmv", "flv", "mxf")
# Enough of the file's start to tell its type: a transport stream shows three packets.
SNIFF_BYTES = HEAD_BYTES
# Larger images are refused before they are decoded: a small PNG can hold a 30000 x 30000
# image, which decodes to gigabytes.
MAX_IMAGE_PIXELS = 50_000_000
# The page shows frames at most this wide: a full 8K frame as base64 JPEG is megabytes.
SHOWN_WIDTH = 1600


class AnalysisError(Exception):
    """The upload could not be analysed; the message says why, for the person who sent it."""


def sniff(head: bytes) -> str | None:
    """The file's type from its first bytes, never from its name."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        if head[8:12] in STILL_BRANDS:
            return None
        return "mov" if head[8:10] == b"qt" else "mp4"
    # the other containers the scan reads: WebM, AVI, camcorders' transport streams, MPEG,
    # Windows Media, Flash, broadcast MXF
    kind = container_kind(head)
    return kind if kind in VIDEO_KINDS else None


def data_uri(rgb: np.ndarray, fmt: str = ".jpg") -> str:
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise AnalysisError("could not encode an image")
    mime = "image/png" if fmt == ".png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buf.tobytes()).decode()


class Analyzer:
    def __init__(
        self,
        scorer,
        ckpt: dict,
        frames: int,
        max_faces: int,
        video_timeout_s: float = 120.0,  # shorter than a scan's: someone waits on the page
        *,
        preprocess=None,
        threshold: float | None = None,
        aggregate: str,
        top_k: int,
    ):
        """Defaults: the checkpoint's preprocessing and threshold; `preprocess`, `threshold`,
        `aggregate` and `top_k` as a scan would take them (see create_app)."""
        self.scorer = scorer
        self.preprocess = preprocess or ckpt["preprocess"]
        self.threshold = float(ckpt["threshold"] if threshold is None else threshold)
        self.model_id = ckpt["model_id"]
        self.frames = frames
        self.max_faces = max_faces
        self.aggregate, self.top_k = aggregate, top_k
        self.settings = describe_settings(
            frames, max_faces, self.preprocess, aggregate, top_k, self.threshold
        )
        self.detector = make_detector(self.preprocess)
        # Videos are decoded in a helper process: a file that crashes the decoder must not take
        # the server down with it. One analysis at a time: Grad-CAM hooks the shared model.
        self.extractor = IsolatedExtractor(timeout_s=video_timeout_s)
        self.lock = threading.Lock()

    def analyze(self, path: str, kind: str, visuals: bool = False) -> dict:
        with self.lock:
            return self._analyze(path, kind, visuals)

    def _analyze(self, path: str, kind: str, visuals: bool) -> dict:
        if kind in IMAGE_KINDS:
            crops, meta, frames_sampled, frame, width = self._image(path)
        elif kind in VIDEO_KINDS:
            crops, meta, frames_sampled, frame, width = self._video(path)
        else:
            raise AnalysisError(f"unsupported file type {kind}")
        scores = self.scorer.score(crops) if len(crops) else np.empty(0, np.float32)
        score = aggregate(scores, self.aggregate, self.top_k) if len(scores) else math.nan
        result = {
            "verdict": label_for(score, self.threshold) or "no_face",
            # unrounded: a rounded score could read as on the other side of the threshold
            "fake_score": None if math.isnan(score) else float(score),
            "threshold": self.threshold,
            "faces": [
                {
                    "frame_index": int(m[0]),
                    "timestamp_s": None if math.isnan(m[1]) else round(float(m[1]), 3),
                    "box": [int(v) for v in m[3:7]],
                    "fake_score": round(float(s), 4),
                }
                for m, s in zip(meta, scores, strict=True)
            ],
            "frames_sampled": frames_sampled,
            "model_id": self.model_id,
            "settings": self.settings,
        }
        if not len(crops):
            result["message"] = (
                "No face was found, so there is nothing to score." + self._too_small(width)
            )
        if visuals:
            result["visuals"] = self._visuals(path, kind, crops, meta, scores, frame)
        return result

    def _image(self, path: str):
        _check_image_size(path)
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        if frame is None:
            raise AnalysisError("the image could not be decoded (corrupt or truncated?)")
        faces = detect_faces(frame, self.detector, self.preprocess, self.max_faces)
        crops = np.stack([f.crop for f in faces]) if faces else np.empty((0, 1, 1, 3), np.uint8)
        meta = np.array(
            [[0, math.nan, k, f.box.x, f.box.y, f.box.w, f.box.h] for k, f in enumerate(faces)],
            np.float64,
        ).reshape(-1, 7)
        return crops, meta, 1, frame, frame.shape[1]

    def _too_small(self, width: int) -> str:
        """Where a picture is searched downscaled, the smallest face it can find, in words."""
        searched = self.preprocess.detect_width
        if width <= searched:
            return ""
        floor = smallest_face(self.preprocess)
        return (
            f" In a picture {width} px wide, faces narrower than about "
            f"{round(floor * width / searched)} px are too small to be found at the "
            f"detect width of {searched} px (`deepfake serve --detect-width` searches wider)."
        )

    def _video(self, path: str):
        row = self.extractor.extract(
            describe_file(path).to_row(), self.preprocess.to_dict(), self.frames, self.max_faces
        )
        if row["status"] == STATUS_ERROR:
            raise AnalysisError(f"the video could not be read: {row['error']}")
        crops = unpack_crops(row["crops"], row["crop_size"] or self.preprocess.input_size)
        meta = unpack_face_meta(row["face_meta"])
        return crops, meta, int(row["frames_sampled"]), None, int(row["width"])

    def _visuals(self, path, kind, crops, meta, scores, frame) -> dict:
        out: dict = {"faces": []}
        if len(crops):
            # In chunks: a backward pass holds every activation of its crops (50 MB a face).
            heats = np.concatenate(
                [
                    grad_cam(self.scorer.model, crops[i : i + 8], self.preprocess, self.threshold)
                    for i in range(0, len(crops), 8)
                ]
            )
            for crop, heat in zip(crops, heats, strict=True):
                out["faces"].append(
                    {"crop": data_uri(crop), "heatmap": data_uri(overlay(crop, heat))}
                )
            worst = int(np.argmax(scores))
            if frame is None:  # a video: its frame, decoded in the helper process too
                frame = self.extractor.read_frame(path, int(meta[worst, 0]))
            if frame is not None:
                chosen = meta[:, 0] == meta[worst, 0]
                out["frame"] = data_uri(
                    _fit(_draw_boxes(frame, meta[chosen], scores[chosen], self.threshold))
                )
            if kind in VIDEO_KINDS:
                out["chart"] = _chart(meta, scores, self.threshold)
        elif frame is not None:
            out["frame"] = data_uri(_fit(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        return out


def _check_image_size(path: str) -> None:
    """Refuse an image too large to decode safely, reading its size from the header alone
    (Pillow reads JPEG, PNG and WebP headers; OpenCV has no way to)."""
    from PIL import Image

    limit = f"at most {MAX_IMAGE_PIXELS / 1e6:g} megapixels are analysed: send a smaller copy"
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Image.DecompressionBombError:  # Pillow's own, higher limit
        raise AnalysisError(f"the image is far too large; {limit}") from None
    except Exception:  # whatever its size is, it is not known: never decode it blind
        raise AnalysisError("the image could not be read (corrupt or truncated?)") from None
    if w * h > MAX_IMAGE_PIXELS:
        raise AnalysisError(f"the image is {w} x {h} pixels; {limit}")


def _fit(rgb: np.ndarray, width: int = SHOWN_WIDTH) -> np.ndarray:
    """A picture for the page, at most `width` pixels wide."""
    h, w = rgb.shape[:2]
    if w <= width:
        return rgb
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def _draw_boxes(frame: np.ndarray, meta: np.ndarray, scores: np.ndarray, threshold: float):
    img = frame.copy()
    for m, s in zip(meta, scores, strict=True):
        x, y, w, h = (int(v) for v in m[3:7])
        colour = (0, 0, 220) if s >= threshold else (0, 170, 0)  # BGR: red fake, green real
        thick = max(2, img.shape[1] // 300)
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, thick)
        cv2.putText(img, f"{s:.2f}", (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.5, img.shape[1] / 1000), colour, thick)  # fmt: skip
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _chart(meta: np.ndarray, scores: np.ndarray, threshold: float) -> str:
    """The report's score-over-time chart, for one analysed video."""
    faces = pd.DataFrame(
        {
            "frame_index": meta[:, 0],
            "timestamp_s": meta[:, 1],
            "face_index": meta[:, 2].astype(int),
            "fake_score": scores,
        }
    )
    return score_over_time(faces, threshold, size=(6, 2.4))
