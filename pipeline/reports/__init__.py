"""Parquet reports. A report folder (a local path or a URI: s3://, gs://, ...) holds two Parquet
datasets, `videos/` (one row per video and run) and `faces/` (one row per scored face), and
`runs/` (one JSON record per scan). Read them with pandas:

    from pipeline.reports import load_videos, load_faces, load_runs
    videos = load_videos("reports/footage")   # the latest row per video, most suspicious first

The package, by concern: `store` (where a report lives, its errors), `schema` (the tables),
`writer` (atomic pieces while a scan runs), `read` (for pandas), `runs` (run records).
What a rescan skips is pipeline.incremental.
"""

from pipeline.reports.read import load_faces, load_videos
from pipeline.reports.runs import load_runs
from pipeline.reports.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from pipeline.reports.store import ReportError

__all__ = ["FACES_SCHEMA", "VIDEOS_SCHEMA", "ReportError", "load_faces", "load_runs", "load_videos"]
