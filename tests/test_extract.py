import os

import cv2
import numpy as np
import pytest
from fixtures import write_phone_video, write_video, write_wide_shot

from pipeline.discover import describe_file
from pipeline.extract import extract_video, unpack_crops, unpack_face_meta


def truncated_copy(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()[:5000]  # mp4v files keep their index (moov) at the end: it is lost


def extract(path, small_preprocess, frames=8):
    return extract_video(describe_file(str(path)).to_row(), small_preprocess, frames, 2)


def test_face_video_gives_crops_for_most_frames(face_video, small_preprocess):
    row = extract(face_video, small_preprocess)
    assert row["status"] == "ok" and row["error"] == ""
    assert row["frames_sampled"] == 8
    assert row["frames_with_face"] >= 6
    crops = unpack_crops(row["crops"], row["crop_size"])
    meta = unpack_face_meta(row["face_meta"])
    assert crops.shape[1:] == (64, 64, 3) and len(crops) == len(meta) >= 6
    assert (row["width"], row["height"], row["fps"]) == (320, 240, 12.0)
    assert row["duration_s"] == pytest.approx(2.0)
    # frame indices are the evenly spread samples; timestamps follow from the frame rate
    assert set(meta[:, 0]) <= {1, 4, 7, 10, 13, 16, 19, 22}
    assert np.allclose(meta[:, 1], meta[:, 0] / 12.0)


def test_phone_video_is_read_upright_by_its_rotation_metadata(tmp_path, small_preprocess):
    # Portrait phone footage stores sideways frames and a rotation to show them with: frames
    # read without it hold a face on its side, which the detector does not find.
    sideways = extract(write_phone_video(tmp_path / "raw.mp4", rotation=False), small_preprocess)
    assert sideways["status"] == "no_face"
    row = extract(write_phone_video(tmp_path / "phone.mp4"), small_preprocess)
    assert row["status"] == "ok" and row["frames_with_face"] >= 6
    assert (row["width"], row["height"]) == (272, 352)  # as shown, not as stored


def test_small_faces_of_a_wide_shot_are_found_with_a_larger_detect_width(tmp_path):
    from pipeline.config import Preprocess

    path = write_wide_shot(tmp_path / "wide.mp4")
    rows = {
        w: extract(path, Preprocess(input_size=64, detect_width=w), frames=4) for w in (480, 960)
    }
    assert rows[480]["status"] == "no_face"
    assert rows[960]["status"] == "ok" and rows[960]["frames_with_face"] == 4
    meta = unpack_face_meta(rows[960]["face_meta"])
    assert (meta[:, 5] >= 80).all() and (meta[:, 5] <= 130).all()  # boxes in full-frame pixels


def test_video_without_faces_is_no_face(tmp_path, small_preprocess):
    row = extract(write_video(tmp_path / "scene.mp4", face=False), small_preprocess)
    assert row["status"] == "no_face"
    assert row["frames_sampled"] == 8 and row["frames_with_face"] == 0
    assert row["crops"] == b""


def test_one_frame_video(tmp_path, small_preprocess):
    row = extract(write_video(tmp_path / "one.mp4", frames=1), small_preprocess)
    assert row["status"] == "ok" and row["frames_sampled"] == 1


def test_4k_video(tmp_path, small_preprocess):
    path = write_video(tmp_path / "big.mp4", frames=3, width=3840, height=2160)
    row = extract(path, small_preprocess, frames=3)
    assert row["status"] == "ok" and (row["width"], row["height"]) == (3840, 2160)
    assert row["frames_with_face"] == 3


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("just text"), "cannot open as a video"),
        (
            lambda p: p.write_bytes(truncated_copy(write_video(p.with_suffix(".src.mp4")))),
            "cannot open as a video: cut short: it stops at byte 5,000",
        ),
        (lambda p: os.symlink(p.with_name("gone.mp4"), p), "dangling symlink"),
    ],
    ids=["zero-byte", "text", "truncated", "dangling-symlink"],
)
def test_bad_files_become_error_rows(tmp_path, small_preprocess, make, reason):
    path = tmp_path / "bad.mp4"
    make(path)
    row = extract(path, small_preprocess)
    assert row["status"] == "error"
    assert reason in row["error"]
    assert row["crops"] == b"" and row["frames_sampled"] == 0


class UnderCountingCapture:
    """A real capture whose container claims a third of the frames it holds."""

    def __init__(self, path):
        self._cap = cv2.VideoCapture(path)

    def get(self, prop):
        value = self._cap.get(prop)
        return value // 3 if prop == cv2.CAP_PROP_FRAME_COUNT else value

    def __getattr__(self, name):
        return getattr(self._cap, name)


def test_video_longer_than_its_container_says_is_sampled_to_its_end(face_video, small_preprocess):
    row = extract_video(describe_file(str(face_video)).to_row(), small_preprocess, 8, 2,
                        open_capture=UnderCountingCapture)  # fmt: skip
    assert row["status"] == "ok"
    meta = unpack_face_meta(row["face_meta"])
    assert meta[:, 0].max() >= 20  # of 24 frames, though the container said 8
    assert 8 < row["frames_sampled"] <= 16
    assert row["duration_s"] == pytest.approx(2.0)  # counted, not the container's 0.67 s


def test_decoding_for_the_batch_detector_keeps_the_frames_or_cuts_when_too_large(
    face_video, small_preprocess, tmp_path, monkeypatch
):
    import pipeline.extract as extract_module
    from pipeline.extract import FRAME_COLUMNS, decode_video, decoded_frames

    ref = describe_file(str(face_video)).to_row()
    row = decode_video(ref, small_preprocess, 6, 2)
    full, small, meta = decoded_frames(row)
    assert row["status"] == "ok" and row["crops"] == b"" and len(full) == len(small) == 6
    assert full.shape[1:3] == (row["height"], row["width"])
    assert small.shape[2] == min(row["width"], small_preprocess.detect_width)
    assert (np.diff(meta[:, 0]) > 0).all()  # frame indices, in order
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    failed = decode_video(describe_file(str(broken)).to_row(), small_preprocess, 6, 2)
    assert failed["status"] == "error" and failed["frames"] == b"" and failed["error"]
    monkeypatch.setattr(extract_module, "FRAME_BYTES_LIMIT", 1000)
    cut = decode_video(ref, small_preprocess, 6, 2)  # too large: found and cut in the task
    assert cut["status"] == "ok" and cut["frame_shape"][0] == 0 and cut["frames"] == b""
    assert len(unpack_crops(cut["crops"], cut["crop_size"])) >= 5
    assert set(FRAME_COLUMNS) <= set(cut)
