"""Reports read back for pandas: the latest row per video, its faces, the whole history."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from pipeline.reports.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from pipeline.reports.store import FACES, VIDEOS, ReportError, resolve


def read_table(
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
    df = read_table(report_dir, VIDEOS, VIDEOS_SCHEMA)
    if not history:
        df = _latest(df)
    df = df.sort_values(["fake_score", "path"], ascending=[False, True], na_position="last")
    return df.reset_index(drop=True)


def latest_results(report_dir: str) -> pd.DataFrame:
    """The latest row per video, with the columns a scan needs to decide its work
    (finished_videos, vanished_videos): read once, used by both."""
    cols = ["path", "status", "fingerprint", "model_id", "settings", "run_id", "scanned_at"]
    return _latest(read_table(report_dir, VIDEOS, VIDEOS_SCHEMA, columns=cols))


def load_faces(report_dir: str, paths: list[str] | None = None) -> pd.DataFrame:
    """The faces of each video's latest result (of `paths` only, when given: a page that shows
    a few videos need not read the faces of thousands), in video and frame order."""
    faces = read_table(report_dir, FACES, FACES_SCHEMA, paths=paths)
    latest = load_videos(report_dir)[["path", "run_id"]]
    faces = faces.merge(latest, on=["path", "run_id"], how="inner")
    faces = faces.sort_values(["path", "frame_index", "face_index"], kind="stable")
    return faces.reset_index(drop=True)
