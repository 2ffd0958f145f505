"""Why a file OpenCV cannot open is not a video: a look at its bytes, for the report's error.

FFmpeg says why on the worker's stderr ("moov atom not found"), which no report row keeps. The
usual reasons on real footage are few and can be told from the container's first bytes and its
top-level boxes: a copy or download that stopped early, a recording the camera never finalised,
or a file that is no video at all (an HTML error page saved as .mp4, a photo, a text file).
"""

from __future__ import annotations

import codecs
import os
import struct

# ISO base media (MP4, MOV, M4V, 3GP): a file is a sequence of boxes, size (4 bytes) and type.
BMFF_TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"meta"}

# ISO base media brands of still images (HEIC, AVIF: phone photos) in the MP4 container
STILL_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif")

# Video containers other than MP4/MOV, by their first bytes: (kind, (offset, bytes), ...). The
# kind is the file type the web page takes an upload as (pipeline.web.analysis.sniff).
CONTAINERS = (
    ("webm", (0, b"\x1a\x45\xdf\xa3")),  # Matroska / WebM
    ("avi", (0, b"RIFF"), (8, b"AVI ")),
    ("wmv", (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")),  # ASF: Windows Media
    ("flv", (0, b"FLV\x01")),
    ("mpg", (0, b"\x00\x00\x01\xba")),  # MPEG program stream
    ("mpeg-video", (0, b"\x00\x00\x01\xb3")),  # MPEG video elementary stream
    ("mxf", (0, b"\x06\x0e\x2b\x34\x02\x05\x01\x01")),  # broadcast MXF
)
# MPEG transport streams: a sync byte 0x47 every 188 bytes, or every 192 after a 4-byte time
# code (AVCHD's .m2ts/.mts); (first sync byte, packet size), three packets to be sure.
TS_PACKETS = ((0, 188), (4, 192))
HEAD_BYTES = 4 + 3 * 192


def container_kind(head: bytes) -> str | None:
    """Which container of CONTAINERS, or "mts" for a transport stream, the file starting with
    `head` is; None for none of them (MP4/MOV: see is_bmff)."""
    for kind, *marks in CONTAINERS:
        if all(head[at : at + len(mark)] == mark for at, mark in marks):
            return kind
    return "mts" if is_transport_stream(head) else None


def is_transport_stream(head: bytes) -> bool:
    return any(
        len(head) > first + 2 * size
        and head[first] == head[first + size] == 0x47 == head[first + 2 * size]
        for first, size in TS_PACKETS
    )


NOT_VIDEO = (  # (bytes at the start, what the file is instead)
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"ID3", "MP3 audio"),
)


def diagnose(path: str) -> str | None:
    """A short reason why the file at `path` is no decodable video, or None when its bytes
    look like an intact container (the trouble is then deeper: damage or a missing codec)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            if is_bmff(head):
                if head[4:8] == b"ftyp" and head[8:12] in STILL_BRANDS:
                    return "not a video: the file is a HEIC/AVIF still image (a phone photo)"
                return _bmff_problem(f, size)
    except OSError:
        return None
    if not head:
        return "empty file (0 bytes)"
    if not head.strip(b"\x00"):
        return "not a video: its first bytes are all zeros (space reserved but never written)"
    for magic, what in NOT_VIDEO:
        if head.startswith(magic):
            return f"not a video: the file is {what}"
    if container_kind(head):
        return None
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "not a video: the file is WAV audio"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"{")):
        return "not a video: the file is a web page or data (a failed download saved as video?)"
    if _is_text(head):
        return "not a video: the file is text"
    return "not a video: its content is no known video container"


def is_bmff(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] in BMFF_TOP_LEVEL


def _bmff_problem(f, size: int) -> str | None:
    """Walk the top-level boxes: say what is missing or where the file stops short."""
    boxes, at, moov = [], 0, None
    while at < size:
        f.seek(at)
        box = _box(f.read(16), size - at)
        if box is None:
            return _cut_short(f"it stops at byte {size:,}, inside a box header", boxes)
        length, kind, _ = box
        if length < 8:
            return "damaged MP4/MOV structure: a box with an impossible size"
        boxes.append(kind)
        if kind == b"moov" and at + length <= size:
            moov = (at, length)
        if at + length > size:
            return _cut_short(
                f"it stops at byte {size:,}, inside its '{_name(kind)}' box, "
                f"which runs to byte {at + length:,}",
                boxes,
            )
        at += length
    if b"moov" not in boxes:
        return (
            "no 'moov' index: the recording was never finalised (the camera or app stopped "
            "before closing the file); tools such as untrunc can rebuild it"
        )
    if moov and moov[1] <= MAX_INDEX_BYTES:
        f.seek(moov[0])
        tracks = track_kinds(f.read(moov[1])[8:])
        if tracks and b"vide" not in tracks:
            held = ", ".join(TRACK_NAMES.get(t, _name(t)) for t in sorted(set(tracks)))
            return f"no video track: the file holds {held} only"
    return None


# Handler types of MP4/MOV tracks, as a person would name them.
TRACK_NAMES = {b"soun": "audio", b"text": "text", b"sbtl": "subtitles", b"meta": "metadata",
               b"hint": "hint tracks", b"tmcd": "timecode"}  # fmt: skip
MAX_INDEX_BYTES = 64 * 1024**2  # a moov index larger than this is not read for its tracks


def track_kinds(moov: bytes) -> list[bytes]:
    """The handler type of each track in a moov box's payload (moov/trak/mdia/hdlr)."""
    kinds = []
    for trak in _children(moov, b"trak"):
        for mdia in _children(trak, b"mdia"):
            for hdlr in _children(mdia, b"hdlr"):
                if len(hdlr) >= 12:  # version and flags, pre_defined, then the handler type
                    kinds.append(hdlr[8:12])
    return kinds


def _children(payload: bytes, kind: bytes) -> list[bytes]:
    """The payloads of the boxes of type `kind` directly inside `payload`."""
    out, at = [], 0
    while at < len(payload):
        box = _box(payload[at : at + 16], len(payload) - at)
        if box is None or not box[2] <= box[0] <= len(payload) - at:
            break  # damaged: what was read so far stands
        length, this, header = box
        if this == kind:
            out.append(payload[at + header : at + length])
        at += length
    return out


def _box(header: bytes, room: int) -> tuple[int, bytes, int] | None:
    """(length, type, header length) of the box whose first bytes are `header`, `room` bytes
    from its start to the end of what holds it; None when `header` ends inside the header."""
    if len(header) < 8:
        return None
    length, kind = struct.unpack(">I4s", header[:8])
    if length == 1:  # a 64-bit size follows
        if len(header) < 16:
            return None
        return struct.unpack(">Q", header[8:16])[0], kind, 16
    if length == 0:  # the last box, to the end of what holds it
        return room, kind, 8
    return length, kind, 8


def _cut_short(where: str, boxes: list[bytes]) -> str:
    if b"moov" not in boxes:
        return (
            f"cut short: {where}, before its 'moov' index; a copy, download or recording "
            f"stopped early"
        )
    return f"cut short: {where}; a copy or download stopped early"


def _name(kind: bytes) -> str:
    return kind.decode("latin-1")


def _is_text(head: bytes) -> bool:
    try:  # incremental: a character cut at the end of the sample is not a decoding error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c.isspace() for c in text)
