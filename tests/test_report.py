"""`deepfake report` and `make demo`'s steps, on small real reports."""

import json
import os
import re

import pandas as pd
import pytest
from click.testing import CliRunner
from fixtures import write_video

from jobs.cli import cli
from pipeline.reports import load_videos


@pytest.fixture(scope="module")
def report(ray_session, checkpoint, tmp_path_factory):
    d = tmp_path_factory.mktemp("footage")
    for i in range(3):
        write_video(d / f"clip{i}.mp4", frames=8 + 4 * i)
    (d / "broken.mp4").write_text("not a video")
    out = tmp_path_factory.mktemp("report")
    args = ["scan", str(d), "--out", str(out), "--checkpoint", checkpoint, "--frames", "4"]
    result = CliRunner().invoke(cli, args + ["--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_terminal_summary_names_counts_and_the_most_suspicious(report):
    result = CliRunner().invoke(cli, ["report", str(report)])
    assert result.exit_code == 0, result.output
    top = load_videos(str(report)).iloc[0]
    assert "4 videos" in result.output and "error 1" in result.output and "ok 3" in result.output
    lines = result.output.splitlines()
    first = lines.index("most suspicious:") + 1
    assert lines[first].strip().endswith(top.path)
    assert "  settings: frames=4 max_faces=2 " in result.output  # what the results depend on
    broken = lines[lines.index("could not be scored (1):") + 1]  # and what needs a person
    assert broken.startswith("  /") and broken.endswith(
        "/broken.mp4: cannot open as a video: not a video: the file is text"
    )


def test_json_and_csv_for_scripts(report):
    out = json.loads(CliRunner().invoke(cli, ["report", str(report), "--format", "json"]).output)
    assert out["videos"] == 4 and out["by_status"] == {"ok": 3, "error": 1}
    assert [os.path.basename(e["path"]) for e in out["errors"]] == ["broken.mp4"]
    scores = [v["fake_score"] for v in out["most_suspicious"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    result = CliRunner().invoke(cli, ["report", str(report), "--format", "csv"])
    from io import StringIO

    table = pd.read_csv(StringIO(result.output))
    assert len(table) == 4 and {"path", "status", "fake_score", "error"} <= set(table.columns)


def test_html_report_is_self_contained_and_shows_the_top_video(report, tmp_path):
    page = tmp_path / "audit.html"
    result = CliRunner().invoke(cli, ["report", str(report), "--html", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    top = load_videos(str(report)).iloc[0].path
    assert f"<h3>1. {top}</h3>" in text
    assert text.count("data:image/png;base64,") == 1 + 3  # histogram + one chart per video
    assert text.count("data:image/jpeg;base64,") >= 3  # face thumbnails cut from the videos
    assert "broken.mp4" in text and "cannot open as a video" in text  # the error table
    assert "<th>last run settings</th><td>frames=4 max_faces=2 " in text
    assert not re.search(r"src=['\"](?!data:)", text)  # nothing loaded from elsewhere


def test_report_of_a_folder_without_a_scan_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no scan report" in result.output


def test_a_report_whose_scans_found_nothing_yet_or_still_run_is_summarised(tmp_path):
    from pipeline.reports.runs import write_run_record

    first = {"run_id": "20261101T010000Z-aaaaaa", "status": "completed", "found": 0,
             "scanned": 0, "skipped": 0, "started_at": "2026-11-01T01:00:00+00:00",
             "finished_at": "2026-11-01T01:00:01+00:00"}  # fmt: skip
    write_run_record(str(tmp_path), first)  # an empty folder: runs/, no videos/ yet
    second = {"run_id": "20261102T010000Z-bbbbbb", "status": "running",
              "started_at": "2026-11-02T01:00:00+00:00"}  # fmt: skip
    write_run_record(str(tmp_path), second)
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "0 videos" in result.output
    assert "last run 20261102T010000Z-bbbbbb (running), started 2026-11-02" in result.output
    out = json.loads(CliRunner().invoke(cli, ["report", str(tmp_path), "--format", "json"]).output)
    assert out["last_run"]["run_id"] == second["run_id"] and out["last_run"]["found"] is None
    write_run_record(str(tmp_path), {**second, "status": "completed", "found": 4, "scanned": 4})
    out = json.loads(CliRunner().invoke(cli, ["report", str(tmp_path), "--format", "json"]).output)
    assert out["last_run"]["found"] == 4 and isinstance(out["last_run"]["found"], int)


def test_report_arguments_that_cannot_work_exit_2_before_printing(report, tmp_path):
    result = CliRunner().invoke(cli, ["report", str(report), "--top", "-1"])
    assert result.exit_code == 2
    page = tmp_path / "no" / "such" / "folder" / "audit.html"
    result = CliRunner().invoke(cli, ["report", str(report), "--html", str(page)])
    assert result.exit_code == 2 and "folder does not exist" in result.output
    assert "videos in" not in result.output


def test_demo_steps_at_reduced_size(ray_session, tmp_path):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
    from demo import run_demo

    out = run_demo(str(tmp_path / "demo"), clips=1, frames=12, epochs=1, image_size=48)
    videos = load_videos(out["report_dir"])
    # 2 real clips, 2 manipulated ones, a clip without a face and two broken files
    assert len(videos) == 7
    assert set(videos.status) == {"ok", "no_face", "error"}
    assert videos[videos.path.str.contains("/fake/")].status.eq("ok").any()
    with open(out["html"]) as f:
        html = f.read()
    top = videos[videos.status == "ok"].iloc[0].path
    assert f"<h3>1. {top}</h3>" in html and "data:image/jpeg;base64," in html
    assert os.path.exists(out["checkpoint"])
    again = run_demo(str(tmp_path / "demo"), clips=1, frames=12, epochs=1, image_size=48)
    assert len(load_videos(again["report_dir"])) == 7  # `make demo` twice: the same audit
