import struct

import cv2
import numpy as np
import pytest
from fixtures import write_video

from pipeline.video import (
    SEEK_GAP,
    VideoError,
    open_video,
    probe,
    read_frame,
    sample_frames,
    sample_indices,
)


def test_sample_indices_spread_evenly_and_avoid_the_ends():
    idx = sample_indices(100, 4)
    assert idx == [12, 37, 62, 87]
    assert sample_indices(3, 10) == [0, 1, 2]
    assert sample_indices(1, 32) == [0]
    assert sample_indices(0, 5) == []


class FakeCapture:
    """A capture over `true_count` frames whose pixel value is the frame index. Like OpenCV's
    FFmpeg backend, it caps a seek at the frame count its container reports, and says yes."""

    def __init__(self, true_count: int, reported: int):
        self.true_count, self.reported = true_count, reported
        self.pos = 0
        self.decoded = 0

    def grab(self):
        if self.pos >= self.true_count:
            return False
        self.pos += 1
        self.decoded += 1
        return True

    def read(self):
        if not self.grab():
            return False, None
        return True, np.full((4, 4, 3), (self.pos - 1) % 256, np.uint8)

    def set(self, prop, value):
        assert prop == cv2.CAP_PROP_POS_FRAMES
        self.pos = min(int(value), self.reported) if self.reported > 0 else int(value)
        return True

    def release(self):
        pass


def run(true_count, reported, n):
    caps, counts = [], []

    def opener():
        caps.append(FakeCapture(true_count, reported))
        return caps[-1]

    frames = list(sample_frames(opener, n, reported, counts.append))
    for index, frame in frames:
        assert frame[0, 0, 0] == index % 256  # the frame really is the one its index says
    return [i for i, _ in frames], caps, counts


def test_correct_count_reads_only_what_it_needs():
    got, caps, counts = run(true_count=50, reported=50, n=5)
    assert got == [5, 15, 25, 35, 45]
    assert len(caps) == 1
    assert caps[0].decoded == 50  # the last wanted frame, then a check that the video ends
    assert counts == []  # nothing was counted: the container's count stands


def test_count_a_frame_or_two_low_changes_nothing():
    got, caps, counts = run(true_count=52, reported=50, n=5)
    assert got == [5, 15, 25, 35, 45]
    assert len(caps) == 1 and counts == []


def test_far_apart_frames_are_reached_by_seeking():
    got, caps, counts = run(true_count=SEEK_GAP * 20, reported=SEEK_GAP * 20, n=4)
    assert len(got) == 4 and counts == []
    assert caps[0].decoded < SEEK_GAP * 2  # also the check past the end is one seek


def test_missing_count_is_counted():
    got, _, counts = run(true_count=30, reported=0, n=3)
    assert got == [5, 15, 25]
    assert counts == [30]  # passed on, for the report's duration


def test_count_too_high_still_covers_the_video_with_at_most_n_frames():
    got, _, counts = run(true_count=40, reported=100, n=8)  # e.g. a truncated file
    assert len(got) == 8
    assert len(set(got)) == 8
    assert max(got) >= 30  # the end of what really exists is sampled, not only its start
    assert counts == [40]


def test_count_too_low_still_samples_the_end_of_the_video():
    got, _, counts = run(true_count=100, reported=10, n=5)  # e.g. a duration-based estimate
    assert got[:5] == [1, 3, 5, 7, 9]  # what the container said, already on its way downstream
    assert got == sorted(set(got)) and len(got) == 10  # then at most n more, in order
    assert max(got) >= 90  # the end of the video is looked at, not only its first tenth
    assert counts == [100]


def test_count_too_low_on_a_long_video_checks_by_seeking():
    got, _, counts = run(true_count=SEEK_GAP * 60, reported=SEEK_GAP * 20, n=4)
    assert len(got) == 8 and max(got) >= SEEK_GAP * 50
    assert counts == [SEEK_GAP * 60]


def test_real_video_frames_match_their_indices(tmp_path):
    # Frame brightness encodes the index, so a wrong seek shows as a wrong brightness.
    path = str(tmp_path / "ramp.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    total = SEEK_GAP * 3
    for i in range(total):
        writer.write(np.full((48, 64, 3), i % 250, np.uint8))
    writer.release()
    info = probe(open_video(path))
    assert (info.frame_count, info.width, info.height) == (total, 64, 48)
    got = list(sample_frames(lambda: open_video(path), 4, info.frame_count))
    assert [i for i, _ in got] == sample_indices(total, 4)
    for index, frame in got:
        assert abs(float(frame.mean()) - index % 250) < 4
        assert np.array_equal(read_frame(path, index), frame)  # the page shows this very frame
    assert read_frame(path, total + 5) is None
    assert read_frame(str(tmp_path / "none.mp4"), 0) is None


def test_not_a_video_raises_video_error(tmp_path):
    path = tmp_path / "text.mp4"
    path.write_text("not a video")
    with pytest.raises(VideoError, match="cannot open as a video: not a video: the file is text"):
        open_video(str(path))


def box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    return struct.pack(">I4s", len(payload) + 8 if size is None else size, kind) + payload


FTYP = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")


def track(handler: bytes) -> bytes:
    """A trak box whose media handler is `handler` (b"vide", b"soun", ...)."""
    hdlr = box(b"hdlr", bytes(8) + handler + bytes(12) + b"handler\x00")
    return box(b"trak", box(b"tkhd", bytes(84)) + box(b"mdia", box(b"mdhd", bytes(24)) + hdlr))


@pytest.mark.parametrize(
    "content, reason",
    [
        # a copy that stopped early: the mp4v writer puts its index (moov) after the frames
        ("half", "cut short: it stops at byte "),
        # a camera that died mid-recording: frames written, the index never
        (FTYP + box(b"mdat", bytes(5000), size=0), "no 'moov' index: the recording was never"),
        (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "web page or data"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(2000), "not a video: the file is a PDF"),
        (bytes(4096), "its first bytes are all zeros"),
        (bytes(range(256)) * 8, "its content is no known video container"),
        # the boxes are whole, the index is there but broken: nothing to say beyond OpenCV
        (FTYP + box(b"moov", b"\xff" * 64), "cannot open as a video (damaged, or a codec"),
        (FTYP + b"\x00\x00\x10", "cut short: it stops at byte 31, inside a box header"),
        (
            box(b"ftyp", b"heic\x00\x00\x00\x00mif1heic") + box(b"meta", bytes(40)),
            "not a video: the file is a HEIC/AVIF still image",
        ),
        # containers other than MP4 that look whole: AVCHD's 192-byte packets, broadcast MXF
        ((b"\x00" * 4 + b"\x47" + bytes(187)) * 3, "cannot open as a video (damaged, or a codec"),
        (b"\x06\x0e\x2b\x34\x02\x05\x01\x01" + bytes(600), "(damaged, or a codec"),
        # a voice memo or a podcast saved as .mp4: whole, with an index, and no picture
        (
            FTYP + box(b"moov", track(b"soun")) + box(b"mdat", bytes(4000)),
            "cannot open as a video: no video track: the file holds audio only",
        ),
    ],
    ids=[
        "cut-short",
        "never-finalised",
        "html",
        "pdf",
        "zeros",
        "unknown",
        "damaged",
        "cut-in-header",
        "heic",
        "m2ts",
        "mxf",
        "audio-only",
    ],
)
def test_a_file_that_cannot_be_opened_says_why(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content == "half":
        with open(write_video(tmp_path / "good.mp4", frames=12), "rb") as f:
            data = f.read()
        content = data[: len(data) // 2]
        reason += f"{len(content):,}, inside its 'mdat' box"
    path.write_bytes(content)
    with pytest.raises(VideoError) as raised:
        open_video(str(path))
    assert str(raised.value).startswith("cannot open as a video")
    assert reason in str(raised.value)


def test_real_video_longer_than_its_header_says_gives_the_frames_it_names(tmp_path):
    # An AVI whose headers claim a third of its 3,000 frames; OpenCV caps seeks at that count.
    path = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 32))
    for i in range(3000):
        frame = np.zeros((32, 32, 3), np.uint8)
        frame[:, :16], frame[:, 16:] = i % 256, (i // 256) * 16  # the index, in two halves
        writer.write(frame)
    writer.release()
    data = bytearray(path.read_bytes())
    for chunk, offset in ((b"avih", 8 + 16), (b"strh", 8 + 32)):  # dwTotalFrames, dwLength
        struct.pack_into("<I", data, data.find(chunk) + offset, 1000)
    path.write_bytes(bytes(data))
    assert probe(open_video(str(path))).frame_count == 1000
    for n in (4, 32):
        counts = []
        got = list(sample_frames(lambda: open_video(str(path)), n, 1000, counts.append))
        shown = [round(f[0, 20, 0] / 16) * 256 + int(f[0, 4, 0]) for _, f in got]
        # Every frame is the one its index names (JPEG colour round-off moves a shade or two;
        # a capped seek would be off by tens to thousands of frames).
        assert all(abs(i - seen) <= 3 for (i, _), seen in zip(got, shown, strict=True))
        assert counts == [3000] and max(shown) >= 2500


def test_the_track_reader_finds_the_picture_in_a_real_mp4(tmp_path):
    from pipeline.container import track_kinds

    with open(write_video(tmp_path / "clip.mp4", frames=6), "rb") as f:
        data = f.read()
    at = data.index(b"moov") - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    assert track_kinds(data[at + 8 : at + length]) == [b"vide"]
