"""Parquet reports: schemas, atomic piece-by-piece writes, and loading for pandas.

A report folder holds two Parquet datasets, `videos/` (one row per video and run) and `faces/`
(one row per scored face). Results are written while a scan runs, in pieces: each piece is
written under a hidden temporary name and then renamed (object stores make a plain write
atomic), so pyarrow and pandas, which skip names starting with '.' or '_', never see half a file.

REPORT_DIR may be a local path or any URI pyarrow's filesystems understand (s3://, gs://, ...).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.config import parse_settings
from pipeline.extract import FACE_META_COLUMNS, empty_row, unpack_face_meta

TIMESTAMP = pa.timestamp("us", tz="UTC")

VIDEOS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | no_face | error | missing
        pa.field("error", pa.string()),  # why, when status is error
        pa.field("fake_score", pa.float64()),  # 0..1, null unless status is ok
        pa.field("label", pa.string()),  # fake | real, null unless status is ok
        pa.field("frames_sampled", pa.int32()),
        pa.field("frames_with_face", pa.int32()),
        pa.field("faces_scored", pa.int32()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("size_bytes", pa.int64()),
        pa.field("modified_at", TIMESTAMP),
        pa.field("fingerprint", pa.string()),  # size, mtime and a content sample, hashed
        pa.field("model_id", pa.string()),  # content hash of the checkpoint that scored it
        pa.field("settings", pa.string()),  # the scan settings the result depends on
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("scanned_at", TIMESTAMP, nullable=False),
    ]
)

FACES_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("timestamp_s", pa.float64()),
        pa.field("face_index", pa.int32(), nullable=False),  # 0 = largest face in its frame
        pa.field("x", pa.int32(), nullable=False),  # box in full-frame pixels
        pa.field("y", pa.int32(), nullable=False),
        pa.field("w", pa.int32(), nullable=False),
        pa.field("h", pa.int32(), nullable=False),
        pa.field("fake_score", pa.float32(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

VIDEOS = "videos"
FACES = "faces"


class ReportError(RuntimeError):
    """The report folder cannot be used: it cannot be created or written, or it holds a file
    that is not one of its Parquet pieces. Says which, and what to do."""


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


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


def _none_if_nan(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _timestamp(epoch_s) -> datetime | None:
    epoch_s = _none_if_nan(epoch_s)
    return None if epoch_s is None else datetime.fromtimestamp(float(epoch_s), tz=UTC)


def video_record(row: dict, run_id: str, scanned_at: datetime, settings: str = "") -> dict:
    """A scored row from the pipeline -> one row of the videos table."""
    return {
        "path": str(row["path"]),
        "status": str(row["status"]),
        "error": str(row["error"]) or None,
        "fake_score": _none_if_nan(float(row["fake_score"])),
        "label": str(row["label"]) or None,
        "frames_sampled": int(row["frames_sampled"]),
        "frames_with_face": int(row["frames_with_face"]),
        "faces_scored": int(row["faces_scored"]),
        "duration_s": _none_if_nan(float(row["duration_s"])),
        "fps": _none_if_nan(float(row["fps"])),
        "width": int(row["width"]) or None,
        "height": int(row["height"]) or None,
        "size_bytes": int(row["size_bytes"]),
        "modified_at": _timestamp(row["modified_at"]),
        "fingerprint": str(row["fingerprint"]) or None,
        "model_id": str(row["model_id"]) or None,
        "settings": settings or None,
        "run_id": run_id,
        "scanned_at": scanned_at,
    }


def face_columns(row: dict, run_id: str) -> dict[str, np.ndarray]:
    """A scored row -> its faces, as columns of the faces table."""
    meta = unpack_face_meta(row["face_meta"])
    scores = np.frombuffer(row["face_scores"], np.float32)
    if len(meta) != len(scores):
        raise ValueError(f"{row['path']}: {len(meta)} faces but {len(scores)} scores")
    cols = {name: meta[:, i] for i, name in enumerate(FACE_META_COLUMNS)}
    out = {"path": np.full(len(meta), str(row["path"]), dtype=object)}
    for field in FACES_SCHEMA:
        if field.name in cols:
            out[field.name] = cols[field.name].astype(field.type.to_pandas_dtype())
    out["fake_score"] = scores
    out["run_id"] = np.full(len(meta), run_id, dtype=object)
    return out


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
            _fsync(tmp)
            self.fs.move(tmp, final)
        else:  # object stores: a single PUT is atomic, and they have no cheap rename
            pq.write_table(table, final, filesystem=self.fs)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(
    report_dir: str,
    table_name: str,
    schema: pa.Schema,
    columns: list[str] | None = None,
    paths: list[str] | None = None,
) -> pd.DataFrame:
    fs, root = resolve(report_dir)
    folder = f"{root}/{table_name}"
    info = fs.get_file_info(folder)
    if info.type != pafs.FileType.Directory:
        table = schema.empty_table()
        return _to_pandas(table.select(columns) if columns else table)
    where = None if paths is None else pc.field("path").isin(pa.array(paths, pa.string()))
    try:
        dataset = pads.dataset(folder, filesystem=fs, format="parquet", schema=schema)
        return _to_pandas(dataset.to_table(columns=columns, filter=where))
    except pa.ArrowInvalid as exc:  # a file that is not Parquet, or not one of ours
        raise ReportError(
            f"{folder} holds a file that is not a piece of this report ({exc}); "
            "move it out of the report folder"
        ) from exc


# Integer columns with nulls stay integers (pandas' nullable dtypes) instead of becoming floats.
_NULLABLE_INTS = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=_NULLABLE_INTS.get)


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    if not len(df):
        return df
    df = df.sort_values(["scanned_at", "run_id"], kind="stable")
    return df.drop_duplicates("path", keep="last")


def load_videos(report_dir: str, history: bool = False) -> pd.DataFrame:
    """The videos table as a DataFrame: the latest row per video (or every row, `history=True`),
    most suspicious first. A folder that does not exist is an error, not an empty audit."""
    fs, root = resolve(report_dir)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no scan report at {report_dir}")
    df = _read(report_dir, VIDEOS, VIDEOS_SCHEMA)
    if not history:
        df = _latest(df)
    df = df.sort_values(["fake_score", "path"], ascending=[False, True], na_position="last")
    return df.reset_index(drop=True)


def latest_results(report_dir: str) -> pd.DataFrame:
    """The latest row per video, with the columns a scan needs to decide its work
    (finished_videos, vanished_videos): read once, used by both."""
    cols = ["path", "status", "fingerprint", "model_id", "settings", "run_id", "scanned_at"]
    return _latest(_read(report_dir, VIDEOS, VIDEOS_SCHEMA, columns=cols))


def finished_videos(
    report_dir: str, latest: pd.DataFrame | None = None
) -> dict[str, tuple[str, str, str]]:
    """path -> (fingerprint, model_id, settings) of every video whose latest result is final:
    scored (`ok`) or decoded without a face (`no_face`). Errors are not final: they are retried.
    Rows written before the settings were recorded have "" for them. `latest`: what
    latest_results gives, when the caller has it already."""
    df = latest_results(report_dir) if latest is None else latest
    df = df[df.status.isin(["ok", "no_face"]) & df.fingerprint.notna()]
    keys = zip(df.fingerprint, df.model_id.fillna(""), df.settings.fillna(""), strict=True)
    return dict(zip(df.path, keys, strict=True))


def moved_results(
    report_dir: str, moves: dict[str, str], latest: pd.DataFrame, run_id: str, scanned_at: datetime
) -> tuple[pa.Table, pa.Table]:
    """Videos found again at another path, with the same content (`moves`: new path -> an old
    path whose latest result is final and was made by the same model and settings): that
    result, the old path's row of run `latest` names, restated as this run's rows for the new
    path, (videos, faces). Read before this run writes anything of its own."""
    pairs = pd.DataFrame({"new": list(moves), "path": list(moves.values())})
    pairs = pairs.merge(latest[["path", "run_id"]], on="path")  # the exact result: path and run
    old = sorted(set(pairs.path))
    videos = _read(report_dir, VIDEOS, VIDEOS_SCHEMA, paths=old)
    videos = videos.merge(pairs, on=["path", "run_id"]).drop_duplicates("new")
    faces = _read(report_dir, FACES, FACES_SCHEMA, paths=old)
    faces = faces.merge(pairs, on=["path", "run_id"])

    def restated(frame: pd.DataFrame, schema: pa.Schema, **columns) -> pa.Table:
        frame = frame.assign(path=frame.new, run_id=run_id, **columns)[schema.names]
        return pa.Table.from_pandas(frame.reset_index(drop=True), schema=schema,
                                    preserve_index=False)  # fmt: skip

    return (
        restated(videos, VIDEOS_SCHEMA, scanned_at=scanned_at),
        restated(faces, FACES_SCHEMA),
    )


STATUS_MISSING = "missing"


def vanished_videos(
    report_dir: str, video_dir: str, found: set[str], latest: pd.DataFrame | None = None
) -> list[dict]:
    """Rows of status `missing` for the videos under `video_dir` that the report still lists but
    this scan no longer finds (`found`: every path it discovered, folders it could not list
    included): deleted, moved or renamed files, and folders whose listing error is gone because
    they can be listed again. Their earlier results stay in the history; only the latest row
    says they are gone. Left alone: files that still exist (another --extensions choice) and
    anything inside a folder this scan could not list (unknown, and that folder's row says so).
    `latest`: what latest_results gives, when the caller has it already."""
    root = os.path.abspath(video_dir)
    inside = os.path.join(root, "")  # "/videos/" (not "/videos2"), and "/" for "/"
    latest = latest_results(report_dir) if latest is None else latest
    rows = []
    for path, status, run_id in zip(latest.path, latest.status, latest.run_id, strict=True):
        if status == STATUS_MISSING or path in found or not path.startswith(inside):
            continue
        if _inside_any(path, root, found):  # under a folder that cannot be listed now
            continue
        if not os.path.lexists(path):
            why = f"no longer found under {root}: deleted, moved or renamed since run {run_id}"
        elif status == "error" and os.path.isdir(path):
            why = "this folder can be listed again: its videos have rows of their own"
        else:  # still there, not selected this time
            continue
        nothing = {"fake_score": math.nan, "label": "", "faces_scored": 0, "model_id": ""}
        rows.append(
            {**empty_row({"path": path}), **nothing, "status": STATUS_MISSING, "error": why}
        )
    return rows


def _inside_any(path: str, root: str, folders: set[str]) -> bool:
    """Whether a folder between `path` and `root` (both included) is in `folders`."""
    parent = os.path.dirname(path)
    while len(parent) >= len(root):
        if parent in folders:
            return True
        if parent == os.path.dirname(parent):  # "/"
            break
        parent = os.path.dirname(parent)
    return False


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


RUNS = "runs"


def write_run_record(report_dir: str, record: dict) -> None:
    """REPORT_DIR/runs/<run_id>.json, replaced atomically."""
    fs, root = resolve(report_dir)
    folder = f"{root}/{RUNS}"
    fs.create_dir(folder, recursive=True)
    data = json.dumps(record, indent=2, default=str).encode()
    final = f"{folder}/{record['run_id']}.json"
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{folder}/.{record['run_id']}.json.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # else a power cut can leave the renamed file empty
        os.replace(tmp, final)
    else:
        with fs.open_output_stream(final) as f:
            f.write(data)


def load_runs(report_dir: str) -> pd.DataFrame:
    """One row per scan run (REPORT_DIR/runs/*.json), oldest first."""
    fs, root = resolve(report_dir)
    selector = pafs.FileSelector(f"{root}/{RUNS}", allow_not_found=True)
    records = []
    for info in fs.get_file_info(selector):
        name = os.path.basename(info.path)
        if name.endswith(".json") and not name.startswith("."):
            with fs.open_input_stream(info.path) as f:
                data = f.read()
            try:
                record = json.loads(data)
                if not isinstance(record, dict) or "run_id" not in record:
                    raise ValueError("not a run record")
            except ValueError as exc:  # e.g. emptied by a crash: shown, never fatal
                record = _unreadable_run(name, exc)
            records.append(record)
    df = pd.DataFrame(records)
    if not len(df):
        return df
    # By start time: run ids carry whole seconds only, and short runs can start in the same one.
    started = pd.to_datetime(df.get("started_at"), utc=True, format="ISO8601", errors="coerce")
    df = df.assign(_started=started).sort_values(["_started", "run_id"], kind="stable")
    return df.drop(columns="_started").reset_index(drop=True)


def last_scan_settings(report_dir: str, model_id: str) -> dict | None:
    """The settings of the last completed scan into `report_dir` made with the model
    `model_id`: its `settings` words as a dict of strings (`threshold` as the exact float the
    scan used, when its record has it), plus `run_id`. None when there is no such scan."""
    runs = load_runs(report_dir)
    if not len(runs) or "settings" not in runs or "model_id" not in runs:
        return None
    done = runs[(runs.status == "completed") & (runs.model_id == model_id) & runs.settings.notna()]
    if not len(done):
        return None
    run = done.iloc[-1]
    settings = parse_settings(run.settings)
    exact = run.get("threshold")
    if exact is not None and not (isinstance(exact, float) and math.isnan(exact)):
        settings["threshold"] = float(exact)
    return {**settings, "run_id": run.run_id}


def _unreadable_run(name: str, exc: Exception) -> dict:
    """A run record that cannot be parsed, as a row saying so; it starts when its id says."""
    run_id = name[: -len(".json")]
    try:
        started = datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        started = None
    return {
        "run_id": run_id,
        "status": "unreadable",
        "error": f"runs/{name} cannot be read ({exc}); the run's rows are in the tables",
        "started_at": started.isoformat() if started else None,
    }


def mark_interrupted_runs(report_dir: str) -> list[str]:
    """Runs still marked `running` were killed (the caller holds the lock, so none is live):
    mark them `interrupted`."""
    runs = load_runs(report_dir)
    if not len(runs):
        return []
    killed = runs[runs.status == "running"]
    for record in killed.to_dict("records"):
        record = {k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}
        write_run_record(report_dir, {**record, "status": "interrupted"})
    return list(killed.run_id)


def load_faces(report_dir: str, paths: list[str] | None = None) -> pd.DataFrame:
    """The faces of each video's latest result (of `paths` only, when given: a page that shows
    a few videos need not read the faces of thousands), in video and frame order."""
    faces = _read(report_dir, FACES, FACES_SCHEMA, paths=paths)
    latest = load_videos(report_dir)[["path", "run_id"]]
    faces = faces.merge(latest, on=["path", "run_id"], how="inner")
    faces = faces.sort_values(["path", "frame_index", "face_index"], kind="stable")
    return faces.reset_index(drop=True)
