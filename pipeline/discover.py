"""Walk a folder and turn every video file in it into a reference: path, size, mtime, fingerprint.

A file that cannot be looked at (a dangling symlink, no permission) still becomes a reference,
carrying its error, so that it ends as a report row instead of vanishing from the audit; so does a
folder that cannot be listed.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pipeline.config import VIDEO_EXTENSIONS

# The fingerprint reads this much from the start and from the end of a file: enough to notice a
# re-encode or a replaced file with the same size and mtime, cheap enough for thousands of files.
SAMPLE_BYTES = 64 * 1024

# macOS writes an AppleDouble companion "._NAME" (extended attributes, a few KB, no video in it)
# next to every file it copies to a drive without its own metadata support: exFAT and FAT, the
# drives footage travels on. They start with this magic number.
APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07"


@dataclass(frozen=True)
class VideoRef:
    path: str
    size_bytes: int
    modified_at: datetime | None
    fingerprint: str
    error: str = ""

    def to_row(self) -> dict:
        """Plain types only (the time as epoch seconds, NaN when unknown), so that every row,
        good or bad, has the same Arrow types on its way through Ray Data."""
        row = asdict(self)
        row["modified_at"] = self.modified_at.timestamp() if self.modified_at else math.nan
        return row


def normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    exts = tuple(sorted({e.lower().lstrip(".") for e in extensions if e.strip(".")}))
    if not exts:
        raise ValueError("no video extensions given")
    return exts


def find_videos(
    root: str | os.PathLike,
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
    unreadable: list[tuple[str, str]] | None = None,
    metadata: list[str] | None = None,
) -> list[str]:
    """Every file under `root` whose extension is one of `extensions`, compared case-insensitively,
    sorted, absolute paths. Symlinks are followed, to files and to folders; a folder reached twice
    (a link loop, two links, a link into the tree) is walked once, by its real path when it has one
    inside `root`, else by the first link in sorted order. Folders that cannot be listed go to
    `unreadable` as (folder, reason); without that list, the first one raises PermissionError.
    macOS "._" metadata files (by their content, see `is_appledouble`) are not videos: they are
    left out, and go to `metadata` when it is given."""
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise NotADirectoryError(f"video folder not found: {root}")
    exts = {"." + e for e in normalise_extensions(extensions)}

    def on_error(exc: OSError) -> None:
        reason = f"cannot list folder: {exc.strerror or exc}"
        if unreadable is None:
            raise PermissionError(f"{exc.filename}: {reason}") from exc
        unreadable.append((os.fspath(exc.filename or root), reason))

    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    links: list[str] = []  # linked folders, walked after every real one has been seen
    queue = [root]
    while queue:
        for dirpath, dirnames, filenames in os.walk(queue.pop(0), onerror=on_error):
            try:
                st = os.stat(dirpath)
            except OSError:  # removed since it was listed
                dirnames.clear()
                continue
            if (st.st_dev, st.st_ino) in seen:  # a link back up the tree, or a second link
                dirnames.clear()
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames.sort()
            links += [p for d in dirnames if os.path.islink(p := os.path.join(dirpath, d))]
            for name in filenames:
                if os.path.splitext(name)[1].lower() in exts:
                    path = os.path.join(dirpath, name)
                    if name.startswith("._") and is_appledouble(path):
                        if metadata is not None:
                            metadata.append(path)
                    else:
                        found.append(path)
        if not queue:
            queue, links = links, []
    found.sort()
    return found


def other_extensions(root: str | os.PathLike, top: int = 5) -> list[tuple[str, int]]:
    """The `top` most common file extensions under `root` (lower case, with their counts), for
    saying what a folder holds when no video was found in it."""
    counts: dict[str, int] = {}
    for _, _, filenames in os.walk(root):
        for name in filenames:
            ext = os.path.splitext(name)[1].lower()
            if ext and not name.startswith("._"):
                counts[ext] = counts.get(ext, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def is_appledouble(path: str) -> bool:
    """Whether the file starts like a macOS AppleDouble file; False when it cannot be read (it
    then stays a video, and its error is reported)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(APPLEDOUBLE_MAGIC)) == APPLEDOUBLE_MAGIC
    except OSError:
        return False


def fingerprint_file(path: str, size: int, mtime_ns: int) -> str:
    """Size, modification time and a sample of the content (head and tail), hashed."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{size}:{mtime_ns}:".encode())
    _hash_sample(h, path, size)
    return h.hexdigest()


def content_id(path: str) -> str:
    """Size and a sample of the content, hashed, without the modification time: the same file
    found at another path (a moved or copied folder, a clip moved to another label) has the
    same id."""
    size = os.path.getsize(path)
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{size}:".encode())
    _hash_sample(h, path, size)
    return h.hexdigest()


def _hash_sample(h, path: str, size: int) -> None:
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE_BYTES))
        if size > 2 * SAMPLE_BYTES:
            f.seek(size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))


def describe_file(path: str) -> VideoRef:
    """Stat and fingerprint one file; never raises for a bad file, returns its error instead."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        # Reports hold paths as UTF-8 text; a name in another encoding is reported, escaped.
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return VideoRef(shown, 0, None, "", error="file name is not valid UTF-8: rename the file")
    try:
        st = os.stat(path)  # follows symlinks: a dangling one fails here
    except FileNotFoundError:
        reason = "dangling symlink" if os.path.islink(path) else "file vanished before it was read"
        return VideoRef(path, 0, None, "", error=reason)
    except OSError as exc:
        return VideoRef(path, 0, None, "", error=f"cannot stat file: {exc.strerror or exc}")
    modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        return VideoRef(path, 0, modified, "", error="not a regular file")
    try:
        fp = fingerprint_file(path, st.st_size, st.st_mtime_ns)
    except PermissionError:
        return VideoRef(path, st.st_size, modified, "", error="permission denied: file unreadable")
    except OSError as exc:
        return VideoRef(path, st.st_size, modified, "", error=f"cannot read file: {exc}")
    return VideoRef(path, st.st_size, modified, fp)


def describe_files(paths: Iterable[str], threads: int = 8) -> Iterator[VideoRef]:
    """describe_file over many paths, in order; threads hide file-system latency (NFS, FUSE)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        yield from pool.map(describe_file, paths)


def discover(
    root: str | os.PathLike,
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
    metadata: list[str] | None = None,
) -> list[VideoRef]:
    """A reference for every video under `root`, and an error reference for every folder that
    could not be listed (its videos are unknown, so the report says so instead of omitting them).
    macOS "._" metadata files are left out, and go to `metadata` when it is given."""
    unreadable: list[tuple[str, str]] = []
    refs = list(describe_files(find_videos(root, extensions, unreadable, metadata)))
    refs += [VideoRef(folder, 0, None, "", error=reason) for folder, reason in unreadable]
    return sorted(refs, key=lambda r: r.path)
