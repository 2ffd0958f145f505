import math
import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.incremental import vanished_videos
from pipeline.lock import ScanLock
from pipeline.reports import FACES_SCHEMA, VIDEOS_SCHEMA, load_faces, load_videos
from pipeline.reports.writer import ReportWriter


def scored(path, score, faces=2, status="ok"):
    meta = np.array([[i * 10, i * 0.5, 0, 1, 2, 30, 30] for i in range(faces)], np.float64)
    return {
        "path": path,
        "status": status,
        "error": "" if status != "error" else "boom",
        "fake_score": score,
        "label": "" if math.isnan(score) else ("fake" if score >= 0.5 else "real"),
        "frames_sampled": 4,
        "frames_with_face": faces,
        "faces_scored": faces,
        "duration_s": 2.0,
        "fps": 25.0,
        "width": 640,
        "height": 480,
        "size_bytes": 1000,
        "modified_at": 1.7e9,
        "fingerprint": "abc",
        "model_id": "m",
        "face_meta": meta.tobytes() if faces else b"",
        "face_scores": np.full(faces, score, np.float32).tobytes() if faces else b"",
    }


def test_pieces_are_atomic_and_read_back_with_their_schema(tmp_path):
    w = ReportWriter(str(tmp_path), "run1", flush_videos=2)
    w.add(scored("/v/a.mp4", 0.9))
    assert not (tmp_path / "videos").exists()  # nothing until a piece is complete
    w.add(scored("/v/b.mp4", 0.2))
    assert len(os.listdir(tmp_path / "videos")) == 1  # flushed after 2 videos
    w.add(scored("/v/c.mp4", math.nan, faces=0, status="error"))
    w.close()
    names = os.listdir(tmp_path / "videos")
    assert len(names) == 2 and not any(n.startswith(".") for n in names)
    for name in names:
        assert pq.read_schema(tmp_path / "videos" / name).remove_metadata() == VIDEOS_SCHEMA
    assert pq.read_schema(tmp_path / "faces" / names[0]).remove_metadata() == FACES_SCHEMA

    v = load_videos(str(tmp_path))
    assert list(v["path"]) == ["/v/a.mp4", "/v/b.mp4", "/v/c.mp4"]  # most suspicious first
    c = v.iloc[2]
    assert c["status"] == "error" and c["error"] == "boom"
    assert pd.isna(c["fake_score"]) and pd.isna(c["label"])
    assert str(v["width"].dtype) == "Int32"
    assert v["modified_at"].iloc[0] == pd.Timestamp(1.7e9, unit="s", tz="UTC")
    f = load_faces(str(tmp_path))
    assert len(f) == 4 and set(f["path"]) == {"/v/a.mp4", "/v/b.mp4"}
    assert list(f[f.path == "/v/a.mp4"]["frame_index"]) == [0, 10]


def test_carried_results_and_the_rows_they_explain_share_one_piece(tmp_path):
    # A moved video's kept result and its old path's `missing` row: a crash keeps both or
    # neither, however small the pieces.
    first = ReportWriter(str(tmp_path / "old"), "run1")
    first.add(scored("/v/day1/a.mp4", 0.9))
    first.close()
    carried = load_videos(str(tmp_path / "old"))
    videos = pa.Table.from_pandas(carried.assign(path="/v/archive/a.mp4"), preserve_index=False)
    w = ReportWriter(str(tmp_path / "new"), "run2", flush_videos=1, flush_seconds=3600)
    gone = [
        {**scored(p, math.nan, faces=0), "status": "missing"}
        for p in ("/v/day1/a.mp4", "/v/day1/b.mp4")
    ]
    w.add_tables(videos.select(VIDEOS_SCHEMA.names).cast(VIDEOS_SCHEMA), None, rows=gone)
    assert w.pieces_written == 1
    w.close()
    v = load_videos(str(tmp_path / "new")).set_index("path")
    assert v.loc["/v/archive/a.mp4", "fake_score"] == pytest.approx(0.9)
    assert list(v.loc[["/v/day1/a.mp4", "/v/day1/b.mp4"], "status"]) == ["missing"] * 2


def test_latest_result_per_video_and_its_faces(tmp_path):
    first = ReportWriter(str(tmp_path), "20260101T000000Z-aaaaaa")
    first.add(scored("/v/a.mp4", 0.9, faces=3))
    first.add(scored("/v/b.mp4", 0.1))
    first.close()
    second = ReportWriter(str(tmp_path), "20260102T000000Z-bbbbbb")
    second.add(scored("/v/a.mp4", 0.3, faces=1))
    second.close()
    v = load_videos(str(tmp_path))
    assert len(v) == 2
    assert v.set_index("path").loc["/v/a.mp4", "fake_score"] == 0.3
    assert len(load_videos(str(tmp_path), history=True)) == 3
    f = load_faces(str(tmp_path))
    assert len(f[f.path == "/v/a.mp4"]) == 1  # faces of the latest run only
    only_b = load_faces(str(tmp_path), paths=["/v/b.mp4"])  # what a page of a few videos reads
    assert set(only_b.path) == {"/v/b.mp4"} and len(only_b) == 2
    assert len(load_faces(str(tmp_path), paths=[])) == 0


def test_videos_no_longer_found_are_marked_missing_and_nothing_else_is(tmp_path):
    videos, other = tmp_path / "videos", tmp_path / "videos2"
    (videos / "sub").mkdir(parents=True)
    (videos / "locked").mkdir()
    for name in ("kept.mp4", "not-selected.avi"):
        (videos / name).write_bytes(b"x")
    report = str(tmp_path / "report")
    with ReportWriter(report, "20260101T000000Z-aaaaaa") as w:
        for name in ("kept.mp4", "deleted.mp4", "not-selected.avi", "locked/x.mp4"):
            w.add(scored(str(videos / name), 0.9))
        w.add(scored(str(videos / "sub"), math.nan, faces=0, status="error"))  # was unlistable
        w.add(scored(str(videos / "sub.mp4"), 0.8))  # deleted too, beside the folder
        w.add(scored(str(other / "a.mp4"), 0.9))  # another folder scanned into this report
    found = {str(videos / "kept.mp4"), str(videos / "locked")}  # locked/ cannot be listed now

    gone = vanished_videos(report, str(videos) + "/", found)
    by_path = {r["path"]: r for r in gone}
    assert set(by_path) == {str(videos / n) for n in ("deleted.mp4", "sub", "sub.mp4")}
    why = by_path[str(videos / "deleted.mp4")]["error"]
    assert "deleted, moved or renamed since run 20260101T000000Z-aaaaaa" in why
    assert "can be listed again" in by_path[str(videos / "sub")]["error"]

    with ReportWriter(report, "20260102T000000Z-bbbbbb") as w:
        for row in gone:
            w.add(row)
    latest = load_videos(report).set_index("path")
    assert latest.loc[str(videos / "deleted.mp4"), "status"] == "missing"
    assert pd.isna(latest.loc[str(videos / "deleted.mp4"), "fake_score"])
    assert latest.loc[str(videos / "kept.mp4"), "status"] == "ok"
    assert str(videos / "deleted.mp4") not in set(load_faces(report).path)
    history = load_videos(report, history=True)
    assert (history.path == str(videos / "deleted.mp4")).sum() == 2  # the old result is kept
    assert vanished_videos(report, str(videos), found) == []  # said once, not every night
    # The folder itself cannot be listed now (an NFS mount refusing access): nothing is known.
    lost = tmp_path / "other-report"
    with ReportWriter(str(lost), "20260101T000000Z-cccccc") as w:
        w.add(scored(str(videos / "gone" / "a.mp4"), 0.9))
    assert vanished_videos(str(lost), str(videos), {str(videos)}) == []
    assert len(vanished_videos(str(lost), str(videos), set())) == 1


def test_empty_report_folder_gives_empty_frames_with_the_columns(tmp_path):
    assert list(load_videos(str(tmp_path)).columns) == VIDEOS_SCHEMA.names
    assert len(load_faces(str(tmp_path))) == 0


def test_a_report_folder_that_does_not_exist_is_an_error_not_an_empty_audit(tmp_path):
    with pytest.raises(FileNotFoundError, match="no scan report at"):
        load_videos(str(tmp_path / "typo"))


def test_home_folder_in_a_report_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    w = ReportWriter("~/reports", "run1")
    w.add(scored("/v/a.mp4", 0.9))
    w.close()
    assert (tmp_path / "reports" / "videos").is_dir()
    assert list(load_videos("~/reports").path) == ["/v/a.mp4"]
    assert ScanLock("~/reports", "run2").path == str(tmp_path / "reports" / ".lock")


def test_runs_come_back_in_the_order_they_started(tmp_path):
    from pipeline.reports.runs import load_runs, write_run_record

    # Two short runs in the same second: their ids sort the other way round.
    write_run_record(str(tmp_path), {"run_id": "20261126T061512Z-ffffff", "status": "completed",
                                     "started_at": "2026-11-26T06:15:12.100000+00:00"})  # fmt: skip
    write_run_record(str(tmp_path), {"run_id": "20261126T061512Z-000000", "status": "completed",
                                     "started_at": "2026-11-26T06:15:12.900000+00:00"})  # fmt: skip
    assert list(load_runs(str(tmp_path)).run_id) == [
        "20261126T061512Z-ffffff",
        "20261126T061512Z-000000",
    ]


def test_a_run_record_emptied_by_a_crash_is_shown_not_fatal(tmp_path):
    from pipeline.reports.runs import load_runs, mark_interrupted_runs, write_run_record

    write_run_record(str(tmp_path), {"run_id": "20261126T011500Z-aaaaaa", "status": "running",
                                     "started_at": "2026-11-26T01:15:00+00:00"})  # fmt: skip
    (tmp_path / "runs" / "20261125T011500Z-bbbbbb.json").write_bytes(b"")  # a power cut's work
    (tmp_path / "runs" / "notes.json").write_text("[1, 2]")  # not a run record either
    runs = load_runs(str(tmp_path))
    assert list(runs.run_id) == ["20261125T011500Z-bbbbbb", "20261126T011500Z-aaaaaa", "notes"]
    assert list(runs.status) == ["unreadable", "running", "unreadable"]
    assert "runs/20261125T011500Z-bbbbbb.json cannot be read" in runs.error[0]
    assert mark_interrupted_runs(str(tmp_path)) == ["20261126T011500Z-aaaaaa"]
    assert list(load_runs(str(tmp_path)).status) == ["unreadable", "interrupted", "unreadable"]


def test_rows_reach_disk_on_time_even_when_no_new_row_arrives(tmp_path):
    with ReportWriter(str(tmp_path), "run1", flush_seconds=0.2) as w:
        w.add(scored("/v/a.mp4", 0.9))  # then a long wait, as for a slow video
        deadline = time.monotonic() + 10
        while list(load_videos(str(tmp_path)).path) != ["/v/a.mp4"]:
            assert time.monotonic() < deadline, "the row never reached disk"
            time.sleep(0.05)
    assert not w._timer.is_alive()


def test_rows_received_before_a_failure_are_written(tmp_path):
    with (
        pytest.raises(RuntimeError, match="boom"),
        ReportWriter(str(tmp_path), "run1", flush_seconds=3600) as w,
    ):
        w.add(scored("/v/a.mp4", 0.9))
        raise RuntimeError("boom")
    assert list(load_videos(str(tmp_path)).path) == ["/v/a.mp4"]


def test_a_write_that_fails_once_is_retried_and_nothing_is_lost(tmp_path):
    w = ReportWriter(str(tmp_path), "run1", flush_seconds=0.1)
    write, calls = w._write, []

    def fails_once(*args):
        calls.append(args)
        if len(calls) == 1:
            raise OSError("transient")  # e.g. a network file system's hiccup
        return write(*args)

    w._write = fails_once
    w.add(scored("/v/a.mp4", 0.9))  # its timely flush, from the timer, fails once
    time.sleep(0.5)
    w.close()  # all rows are on disk: nothing to complain about
    assert list(load_videos(str(tmp_path)).path) == ["/v/a.mp4"] and len(calls) >= 2


def test_without_a_time_limit_every_row_is_written_at_once_and_no_timer_runs(tmp_path):
    w = ReportWriter(str(tmp_path), "run1", flush_seconds=0)
    w.add(scored("/v/a.mp4", 0.9))
    assert list(load_videos(str(tmp_path)).path) == ["/v/a.mp4"] and w._timer is None
    w.close()
