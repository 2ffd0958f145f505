"""Run records: REPORT_DIR/runs/<run_id>.json, one per scan, what it found, did and used."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime

import pandas as pd
import pyarrow.fs as pafs

from pipeline.config import parse_settings
from pipeline.reports.store import RUNS, resolve


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
