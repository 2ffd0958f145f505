"""Where a report lives: a local folder or any URI pyarrow's filesystems understand (s3://,
gs://, ...), the names of its parts, and the error that says it cannot be used."""

from __future__ import annotations

import contextlib
import os

import pyarrow.fs as pafs

VIDEOS = "videos"


FACES = "faces"


RUNS = "runs"


class ReportError(RuntimeError):
    """The report folder cannot be used: it cannot be created or written, or it holds a file
    that is not one of its Parquet pieces. Says which, and what to do."""


def local_dir(report_dir: str) -> str | None:
    """The absolute local path of a report folder ("~" expanded); None for a URI."""
    if "://" in report_dir:
        return None
    return os.path.abspath(os.path.expanduser(report_dir))


@contextlib.contextmanager
def store_errors(report_dir: str):
    """An OSError from the object store holding `report_dir` (gone, refusing, unreachable)
    becomes a ReportError that names the store: the run failed, and says where."""
    try:
        yield
    except OSError as exc:
        if local_dir(report_dir) is not None:
            raise
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        at = f" at {endpoint}" if endpoint else ""
        raise ReportError(
            f"the object store{at} holding {report_dir} failed: {exc}".strip()
        ) from exc


def resolve(report_dir: str) -> tuple[pafs.FileSystem, str]:
    """A (filesystem, path) pair for a local path or a URI."""
    local = local_dir(report_dir)
    if local is not None:
        return pafs.LocalFileSystem(), local
    return pafs.FileSystem.from_uri(report_dir)


def fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temporary_files(report_dir: str) -> int:
    """Delete the hidden half-written pieces a killed scan left behind (local folders; object
    stores never hold half-written objects). Only call it while holding the scan lock."""
    fs, root = resolve(report_dir)
    if not isinstance(fs, pafs.LocalFileSystem):
        return 0
    removed = 0
    for table_name in (VIDEOS, FACES):
        folder = os.path.join(root, table_name)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed
