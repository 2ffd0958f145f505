"""Results written while a scan runs, in pieces: each piece is written under a hidden
temporary name and then renamed (object stores make a plain write atomic), so pyarrow and
pandas, which skip names starting with '.' or '_', never see half a file."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.reports.schema import FACES_SCHEMA, VIDEOS_SCHEMA, face_columns, video_record
from pipeline.reports.store import FACES, VIDEOS, fsync, resolve


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class ReportWriter:
    """Buffers scored rows and writes them out in atomic pieces, every `flush_videos` videos or
    `flush_seconds` seconds, whichever comes first, so a crash loses at most that much work.
    The time limit holds also while no new row arrives (a slow video, a large scoring batch): a
    background thread flushes on time. Use it as a context manager, or call close()."""

    def __init__(
        self,
        report_dir: str,
        run_id: str,
        flush_videos: int = 256,
        flush_seconds: float = 30.0,
        settings: str = "",
    ):
        self.fs, self.root = resolve(report_dir)
        self.run_id = run_id
        self.settings = settings
        self.flush_videos = flush_videos
        self.flush_seconds = flush_seconds
        self._videos: list[dict] = []
        self._faces: list[pa.Table] = []
        self._seq = 0
        self._last_flush = time.monotonic()
        self.pieces_written = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._timer: threading.Thread | None = None

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, row: dict) -> dict:
        record = video_record(row, self.run_id, datetime.now(UTC), self.settings)
        faces = None
        if row.get("face_meta"):
            faces = pa.table(face_columns(row, self.run_id), schema=FACES_SCHEMA)
        self._append([record], faces)
        return record

    def add_tables(
        self, videos: pa.Table | None, faces: pa.Table | None, rows: list[dict] = ()
    ) -> None:
        """Rows made whole elsewhere (moved_results), and `rows` as `add` takes them, under the
        same flushing rules and into one piece: written together or not at all."""
        now = datetime.now(UTC)
        records = [] if videos is None else videos.to_pylist()
        records += [video_record(row, self.run_id, now, self.settings) for row in rows]
        self._append(records, faces if faces is not None and faces.num_rows else None)

    def _append(self, records: list[dict], faces: pa.Table | None) -> None:
        with self._lock:
            self._videos += records
            if faces is not None:
                self._faces.append(faces)
            if (
                len(self._videos) >= self.flush_videos
                or time.monotonic() - self._last_flush >= self.flush_seconds
            ):
                self._flush()
        if self._timer is None and self.flush_seconds > 0:  # at 0 every add flushes anyway
            self._timer = threading.Thread(target=self._flush_on_time, daemon=True)
            self._timer.start()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Stop the timer and write what is left; raises if that last write fails."""
        self._closed.set()
        if self._timer is not None:
            self._timer.join()
        self.flush()

    def _flush_on_time(self) -> None:
        interval = max(0.05, min(1.0, self.flush_seconds / 4))
        while not self._closed.wait(interval):
            with self._lock:
                if time.monotonic() - self._last_flush < self.flush_seconds:
                    continue
                # A failed write (a full disk, a network hiccup) keeps the rows buffered; the
                # next flush retries them, and one in add() or close() raises if it still fails.
                with contextlib.suppress(Exception):
                    self._flush()

    def _flush(self) -> None:
        if not self._videos:
            self._last_flush = time.monotonic()
            return
        name = f"{self.run_id}-{self._seq:06d}.parquet"
        # Faces first: a crash between the two leaves faces without their video row, which
        # load_faces ignores, never a video whose faces are missing.
        if self._faces:
            self._write(FACES, name, pa.concat_tables(self._faces))
        self._write(VIDEOS, name, pa.Table.from_pylist(self._videos, schema=VIDEOS_SCHEMA))
        self._videos, self._faces = [], []
        self._seq += 1
        self.pieces_written += 1
        self._last_flush = time.monotonic()

    def _write(self, table_name: str, name: str, table: pa.Table) -> None:
        folder = f"{self.root}/{table_name}"
        self.fs.create_dir(folder, recursive=True)
        final = f"{folder}/{name}"
        if isinstance(self.fs, pafs.LocalFileSystem):
            tmp = f"{folder}/.{name}.tmp"
            pq.write_table(table, tmp, filesystem=self.fs)
            fsync(tmp)
            self.fs.move(tmp, final)
        else:  # object stores: a single PUT is atomic, and they have no cheap rename
            pq.write_table(table, final, filesystem=self.fs)
