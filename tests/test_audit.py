"""Overnight audits: incremental runs, crash safety, fault tolerance, one scan per report
folder, and a small multi-node cluster. Kills are real: SIGKILL to real processes."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pyarrow.dataset as pads
import pytest
from click.testing import CliRunner
from fixtures import write_video

from jobs.cli import cli
from pipeline.config import Preprocess
from pipeline.isolate import CRASH_ON_ENV, IsolatedExtractor
from pipeline.lock import ReportLocked, ScanLock
from pipeline.model import build_model, save_checkpoint
from pipeline.reports import load_faces, load_runs, load_videos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scan(video_dir, report, checkpoint, *extra):
    args = ["scan", str(video_dir), "--out", str(report), "--checkpoint", str(checkpoint),
            "--frames", "2", "--json", "--quiet", *extra]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def last_json(text: str) -> dict:
    """The last JSON line a command printed (Ray may print its own lines around it)."""
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def scan_cmd(video_dir, report, checkpoint, *extra):
    return [sys.executable, "-m", "jobs", "scan", str(video_dir), "--out", str(report),
            "--checkpoint", str(checkpoint), "--json", *extra]  # fmt: skip


def kill_9_once(cmd, ready, env=None, timeout_s=180.0) -> None:
    """Start the scan `cmd` in its own process group and kill it (and the Ray it started) with
    SIGKILL as soon as `ready()` says enough of its results are written."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert proc.poll() is None, "the scan ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_rescans_only_what_changed(ray_session, checkpoint, tmp_path):
    videos = tmp_path / "videos"
    for name in ("a", "b", "c"):
        write_video(videos / f"{name}.mp4", frames=6)
    (videos / "broken.mp4").write_text("not a video")
    # what macOS leaves next to a.mp4 on an exFAT drive: metadata, not a video, not a row
    (videos / "._a.mp4").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X" + bytes(4000))
    report = tmp_path / "report"

    first = scan(videos, report, checkpoint)
    assert (first["videos"], first["skipped"]) == (4, 0)
    second = scan(videos, report, checkpoint)
    # unchanged videos are skipped; the error is tried again
    assert (second["videos"], second["skipped"], second["error"]) == (1, 3, 1)

    write_video(videos / "b.mp4", frames=9)  # changed content
    write_video(videos / "d.mp4", frames=6)  # new
    third = scan(videos, report, checkpoint)
    assert (third["videos"], third["skipped"]) == (3, 2)  # b, d and the broken one
    latest = load_videos(str(report)).set_index("path")
    assert latest.loc[str(videos / "b.mp4"), "run_id"] == third["run_id"]
    assert latest.loc[str(videos / "a.mp4"), "run_id"] == first["run_id"]
    assert len(latest) == 5

    assert scan(videos, report, checkpoint, "--rescan")["videos"] == 5

    other = tmp_path / "other.pt"  # another model: everything is scored again
    save_checkpoint(other, build_model(), preprocess=Preprocess(input_size=64), threshold=0.4)
    assert scan(videos, report, other)["videos"] == 5

    # Other settings: a result made with the old ones is not reused, and each row says its own.
    assert scan(videos, report, other, "--threshold", "0.7")["videos"] == 5
    assert scan(videos, report, other, "--threshold", "0.7")["videos"] == 1  # the broken one
    settings = load_videos(str(report)).set_index("path").settings
    assert settings[str(videos / "a.mp4")].startswith("frames=2 max_faces=2 detector=")
    assert settings[str(videos / "a.mp4")].endswith(" aggregate=confident threshold=0.7")

    history = load_videos(str(report), history=True)
    assert len(history) == 4 + 1 + 3 + 5 + 5 + 5 + 1
    assert history.settings.str.endswith("threshold=0.4").sum() == 5  # other.pt's own threshold
    runs = load_runs(str(report))
    assert list(runs.status) == ["completed"] * 7
    assert list(runs.scanned) == [4, 1, 3, 5, 5, 5, 1]
    assert list(runs.skipped) == [0, 3, 2, 0, 0, 0, 4]
    assert list(runs.metadata_files) == [1] * 7
    assert str(videos / "._a.mp4") not in set(history.path)
    for key in ("ok", "no_face", "error", "started_at", "finished_at", "videos_per_s"):
        assert runs[key].notna().all(), key


def test_a_moved_folder_keeps_its_results_and_is_not_scored_again(
    ray_session, checkpoint, tmp_path
):
    videos, report = tmp_path / "videos", tmp_path / "report"
    for name in ("a", "b"):
        write_video(videos / "day1" / f"{name}.mp4", frames=6 + 3 * (name == "b"))
    write_video(videos / "day1" / "scene.mp4", frames=6, face=False)
    first = scan(videos, report, checkpoint)
    before = load_videos(str(report)).set_index("path")
    faces_before = load_faces(str(report))

    # The folder is reorganised (a rename keeps each file's time), one clip is copied anew
    # (a new time: another fingerprint) and one is new.
    os.makedirs(videos / "archive")
    os.rename(videos / "day1", videos / "archive" / "2026-11-26")
    moved = videos / "archive" / "2026-11-26"
    shutil.copyfile(moved / "b.mp4", videos / "b copy.mp4")
    write_video(videos / "c.mp4", frames=7)
    # every row on disk at once: the old paths' missing rows are written before the rest
    second = scan(videos, report, checkpoint, "--flush-seconds", "0")
    assert (second["videos"], second["moved"], second["skipped"]) == (2, 3, 0)
    assert second["missing"] == 3
    latest = load_videos(str(report)).set_index("path")
    for name in ("a.mp4", "b.mp4", "scene.mp4"):
        now, was = latest.loc[str(moved / name)], before.loc[str(videos / "day1" / name)]
        assert now.run_id == second["run_id"] and was.run_id == first["run_id"]
        assert (now.status, now.fingerprint, now.settings) == (was.status, was.fingerprint,
                                                             was.settings)  # fmt: skip
        assert now.fake_score == was.fake_score or (now.status == was.status == "no_face")
        gone = latest.loc[str(videos / "day1" / name)]
        assert gone.status == "missing"
        assert gone.error == (
            f"moved or renamed to {moved / name} (the same content), found there by run "
            f"{second['run_id']}"
        )
    faces = load_faces(str(report))
    for name in ("a.mp4", "b.mp4"):
        old = faces_before[faces_before.path == str(videos / "day1" / name)]
        new = faces[faces.path == str(moved / name)]
        assert len(new) == len(old) > 0 and (new.run_id == second["run_id"]).all()
        assert new.fake_score.tolist() == old.fake_score.tolist()
    runs = load_runs(str(report))
    assert runs.moved.tolist() == [0, 3]
    summary = CliRunner().invoke(cli, ["report", str(report)]).output
    assert "scanned 2, skipped 0, moved 3, no longer found 3" in summary
    # nothing is left to do, and --rescan scores everything, moved or not
    assert (scan(videos, report, checkpoint)["videos"], scan(videos, report, checkpoint,
            "--rescan")["videos"]) == (0, 5)  # fmt: skip


def test_copies_that_move_each_say_where_they_went(ray_session, checkpoint, tmp_path):
    videos, report = tmp_path / "videos", tmp_path / "report"
    write_video(videos / "a.mp4", frames=6)
    shutil.copy2(videos / "a.mp4", videos / "b.mp4")  # a copy with its time: the same content
    write_video(videos / "day1" / "x.mp4", frames=7)
    shutil.copy2(videos / "day1" / "x.mp4", videos / "day1" / "x copy.mp4")
    first = scan(videos, report, checkpoint)
    assert (first["videos"], first["moved"]) == (4, 0)

    os.rename(videos / "b.mp4", videos / "c.mp4")  # a stays: c is b, renamed
    os.rename(videos / "day1", videos / "archive")  # both copies move
    second = scan(videos, report, checkpoint)
    assert (second["videos"], second["moved"], second["missing"]) == (0, 3, 3)
    latest = load_videos(str(report)).set_index("path")
    for was, now in (("b.mp4", "c.mp4"), ("day1/x.mp4", "archive/x.mp4"),
                     ("day1/x copy.mp4", "archive/x copy.mp4")):  # fmt: skip
        assert latest.loc[str(videos / was), "error"] == (
            f"moved or renamed to {videos / now} (the same content), found there by run "
            f"{second['run_id']}"
        )
        assert latest.loc[str(videos / now), "status"] == "ok"
    assert latest.loc[str(videos / "a.mp4"), "run_id"] == first["run_id"]  # still there

    os.remove(videos / "a.mp4")  # deleted: its copy c.mp4 did not come from it
    assert scan(videos, report, checkpoint)["missing"] == 1
    error = load_videos(str(report)).set_index("path").loc[str(videos / "a.mp4"), "error"]
    assert error.startswith(f"no longer found under {videos}: deleted, moved or renamed")


def test_a_deleted_video_is_reported_missing_and_scored_again_when_it_returns(
    ray_session, checkpoint, tmp_path
):
    videos, report = tmp_path / "videos", tmp_path / "report"
    for name in ("a", "b"):
        write_video(videos / f"{name}.mp4", frames=6)
    first = scan(videos, report, checkpoint)
    b = str(videos / "b.mp4")
    os.rename(b, tmp_path / "b.mp4")

    second = scan(videos, report, checkpoint)
    assert (second["videos"], second["skipped"], second["missing"]) == (0, 1, 1)
    latest = load_videos(str(report)).set_index("path")
    assert latest.loc[b, "status"] == "missing" and latest.loc[b, "run_id"] == second["run_id"]
    assert first["run_id"] in latest.loc[b, "error"]
    assert latest.loc[str(videos / "a.mp4"), "status"] == "ok"
    assert load_runs(str(report)).missing.tolist() == [0, 1]
    summary = CliRunner().invoke(cli, ["report", str(report)]).output
    assert "missing 1" in summary and "no longer found 1" in summary
    page = tmp_path / "audit.html"
    CliRunner().invoke(cli, ["report", str(report), "--html", str(page)])
    html = page.read_text()
    assert "Videos no longer found" in html and html.index(b) > html.index("no longer found")
    assert scan(videos, report, checkpoint)["missing"] == 0  # said once

    os.rename(tmp_path / "b.mp4", b)  # back, unchanged: its result is made again, not assumed
    fourth = scan(videos, report, checkpoint)
    assert (fourth["videos"], fourth["skipped"], fourth["missing"]) == (1, 1, 0)
    assert load_videos(str(report)).set_index("path").loc[b, "status"] == "ok"


def _pieces(report):
    folder = report / "videos"
    return [n for n in os.listdir(folder) if not n.startswith(".")] if folder.is_dir() else []


def test_a_scans_log_holds_its_own_lines_not_ray_datas_or_the_decoders(checkpoint, tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "face.mp4", frames=12)
    (videos / "notes.mp4").write_text("not a video")
    (videos / "cut.mp4").write_bytes((videos / "face.mp4").read_bytes()[:3000])
    cmd = scan_cmd(videos, tmp_path / "report", checkpoint, "--frames", "2")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCV_", "RAY_AUTH"))}
    scan = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert scan.returncode == 0, scan.stderr[-3000:]
    assert last_json(scan.stdout)["error"] == 2
    lines = scan.stderr.splitlines()
    assert lines[0].startswith("run ") and "3 videos" in lines[0]
    # Ray Data's lines for each dataset, Ray's start notice, FFmpeg's and OpenCV's complaints
    # about the two broken files (their rows say what is wrong), and Ray's C++ lines (its false
    # alarm at the start of an actor pool; docs/scanning.md): none reach the log.
    noise = ("INFO", "Progress bars", "Token authentication", "moov atom", "WARN", "mov,mp4",
             "core_worker")  # fmt: skip
    assert not [line for line in lines if any(word in line for word in noise)], lines
    errors = load_videos(str(tmp_path / "report")).set_index("path").error
    assert "cut short" in errors[str(videos / "cut.mp4")]


def test_kill_9_mid_scan_then_rerun_finishes_without_loss_or_rework(checkpoint, tmp_path):
    videos = tmp_path / "videos"
    n = 14
    for i in range(n):
        write_video(videos / f"v{i:02d}.mp4", frames=24)
    report = tmp_path / "report"
    cmd = scan_cmd(videos, report, checkpoint, "--frames", "8", "--flush-seconds", "0",
                   "--batch-size", "1")  # fmt: skip
    kill_9_once(cmd, lambda: len(_pieces(report)) >= 3)
    # Whatever reached disk is whole: pyarrow reads every visible piece.
    table = pads.dataset(report / "videos", format="parquet").to_table()
    done_before = table.num_rows
    assert 3 <= done_before < n, "kill the scan while it is still running"

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = last_json(rerun.stdout)
    assert summary["videos"] == n - done_before  # finished videos are not scored again
    assert summary["skipped"] == done_before
    history = load_videos(str(report), history=True)
    assert len(history) == n and history.path.nunique() == n  # each video exactly once
    assert set(load_videos(str(report)).status) == {"ok"}
    assert sorted(load_runs(str(report)).status) == ["completed", "interrupted"]
    assert not list((report / "videos").glob(".*"))  # the killed run's temp files are gone


def test_ctrl_c_ends_the_scan_with_130_and_a_record_that_says_interrupted(checkpoint, tmp_path):
    videos = tmp_path / "videos"
    for i in range(3):
        write_video(videos / f"v{i}.mp4", frames=24 + i)
    for i in range(3, 40):  # more names for the same clips: enough work to interrupt
        os.link(videos / f"v{i % 3}.mp4", videos / f"v{i}.mp4")
    report = tmp_path / "report"
    args = scan_cmd(videos, report, checkpoint, "--frames", "8", "--flush-seconds", "0")[4:]
    # As from a terminal, whatever started the tests: a shell's background job (a CI runner's,
    # say) hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt.
    cmd = [sys.executable, "-c", "import signal, sys; from jobs.cli import scan; "
           "signal.signal(signal.SIGINT, signal.default_int_handler); "
           "scan(sys.argv[1:], prog_name='deepfake scan')", *args]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while not _pieces(report):
        assert proc.poll() is None, "the scan ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Error: interrupted after" in err and "Run the same command again" in err
    assert "Traceback" not in err
    run = load_runs(str(report)).iloc[-1]
    assert run.status == "interrupted" and run.scanned == len(load_videos(str(report))) < 40


def test_a_report_folder_that_cannot_be_used_is_a_message_not_a_traceback(
    checkpoint, face_video, tmp_path
):
    not_a_folder = tmp_path / "report"
    not_a_folder.write_text("a file where the report folder should be")
    args = ["scan", os.path.dirname(face_video), "--checkpoint", checkpoint, "--frames", "2"]
    result = CliRunner().invoke(cli, [*args, "--out", str(not_a_folder)])
    assert result.exit_code == 1 and "cannot create the report folder" in result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback

    junk = tmp_path / "junk-report"
    (junk / "videos").mkdir(parents=True)
    (junk / "videos" / "zzz.parquet").write_text("junk")
    for command in ([*args, "--out", str(junk)], ["report", str(junk)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1 and "zzz.parquet" in result.output, result.output
        assert "move it out of the report folder" in result.output
        assert isinstance(result.exception, SystemExit)


def _worker_pids(name):
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if name in f.read():
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


def test_crashing_decoder_and_killed_worker_do_not_fail_the_run(checkpoint, tmp_path):
    videos = tmp_path / "videos"
    n = 10
    for i in range(n):
        write_video(videos / f"v{i:02d}.mp4", frames=24)
    write_video(videos / "crashme.mp4", frames=6)
    report = tmp_path / "report"
    cmd = scan_cmd(videos, report, checkpoint, "--frames", "8", "--flush-seconds", "0")
    env = {**os.environ, CRASH_ON_ENV: "crashme"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed = None
    deadline = time.monotonic() + 180
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        workers = _worker_pids(b"ray::Map(extract_and_score_row)")  # no GPU: decode + score
        if workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)  # a decoding worker dies mid-task
        time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    assert killed is not None, "no decoding worker was seen running"
    assert proc.returncode == 0, err[-3000:]
    summary = last_json(out)
    assert summary["videos"] == n + 1
    latest = load_videos(str(report)).set_index("path")
    assert len(latest) == n + 1
    crash = latest.loc[str(videos / "crashme.mp4")]
    assert crash.status == "error" and "decoder crashed" in crash.error
    assert (latest.drop(str(videos / "crashme.mp4")).status == "ok").all()


def test_isolated_extractor_survives_a_crash_and_a_hang(tmp_path, small_preprocess, monkeypatch):
    from pipeline.discover import describe_file

    monkeypatch.setenv(CRASH_ON_ENV, "crashme")
    good = describe_file(write_video(tmp_path / "good.mp4", frames=6)).to_row()
    bad = describe_file(write_video(tmp_path / "crashme.mp4", frames=6)).to_row()
    fifo = tmp_path / "hang.mp4"
    os.mkfifo(fifo)  # opening it for reading blocks for ever: a hanging decoder
    hang = {**good, "path": str(fifo)}
    ex = IsolatedExtractor(timeout_s=3)
    pre = small_preprocess.to_dict()
    try:
        assert ex.extract(good, pre, 2, 1)["status"] == "ok"
        crashed = ex.extract(bad, pre, 2, 1)
        assert crashed["status"] == "error" and "crashed" in crashed["error"]
        hung = ex.extract(hang, pre, 2, 1)
        assert hung["status"] == "error" and "longer than 3s" in hung["error"]
        assert ex.extract(good, pre, 2, 1)["status"] == "ok"  # a fresh helper took over
        # The web page reads the frame it shows the same way.
        assert ex.read_frame(good["path"], 3).shape == (240, 320, 3)
        assert ex.read_frame(bad["path"], 3) is None
        assert ex.read_frame(good["path"], 3) is not None
    finally:
        ex.close()


def test_second_scan_into_the_same_report_refuses_and_names_the_first(
    checkpoint, tmp_path, face_video
):
    report = tmp_path / "report"
    with ScanLock(str(report), "20260101T000000Z-first1"):
        with pytest.raises(ReportLocked, match="20260101T000000Z-first1"):
            ScanLock(str(report), "second").acquire()
        result = CliRunner().invoke(
            cli, ["scan", os.path.dirname(face_video), "--out", str(report),
                  "--checkpoint", checkpoint],
        )  # fmt: skip
        assert result.exit_code == 3
        assert "another scan" in result.output and "20260101T000000Z-first1" in result.output
    assert not (report / ".lock").exists()


def _stale_lock(folder):
    """A lock as a killed scan on this host leaves it: its process is gone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_file = folder / ".lock"
    lock_file.write_text(
        json.dumps({"run_id": "old", "pid": dead.pid, "host": socket.gethostname()})
    )
    return lock_file


def test_stale_lock_of_a_killed_scan_does_not_block(tmp_path):
    lock_file = _stale_lock(tmp_path)
    with ScanLock(str(tmp_path), "new"):
        assert json.loads(lock_file.read_text())["run_id"] == "new"
    # a lock from another host is stale once its heartbeat is old
    lock_file.write_text(json.dumps({"run_id": "far", "pid": 1, "host": "elsewhere"}))
    with pytest.raises(ReportLocked):
        ScanLock(str(tmp_path), "new").acquire()
    old = time.time() - 3600
    os.utime(lock_file, (old, old))
    with ScanLock(str(tmp_path), "new"):
        pass


def test_two_scans_taking_over_one_stale_lock_at_once_do_not_both_run(tmp_path):
    lock_file = _stale_lock(tmp_path)
    first, second = ScanLock(str(tmp_path), "first"), ScanLock(str(tmp_path), "second")
    read_lock = second.holder

    def holder_then_first_takes_over():
        info = read_lock()  # second has just seen the stale lock ...
        if info is not None and info.get("run_id") == "old" and first._thread is None:
            first.acquire()  # ... when first takes it over
        return info

    second.holder = holder_then_first_takes_over
    try:
        with pytest.raises(ReportLocked, match="run first"):
            second.acquire()
        assert json.loads(lock_file.read_text())["run_id"] == "first"
        assert not (tmp_path / ".lock.takeover").exists()
    finally:
        first.release()
    assert not lock_file.exists()


def test_a_run_that_fails_exits_non_zero(checkpoint, tmp_path, face_video):
    not_a_folder = tmp_path / "report"
    not_a_folder.write_text("a file where the report folder should be")
    result = CliRunner().invoke(
        cli, ["scan", os.path.dirname(face_video), "--out", str(not_a_folder),
              "--checkpoint", checkpoint, "--quiet"],
    )  # fmt: skip
    assert result.exit_code != 0


@pytest.fixture
def own_ray_tmpdir():
    """Environment for a test's own Ray cluster: its sessions, and the address file that
    `ray start` and ray.cluster_utils write for `ray.init()` to find, go to a private folder
    (short: Ray's socket paths must fit 107 bytes), never /tmp/ray, where a killed cluster's
    stale address would send this machine's next plain `ray.init()` looking for it."""
    address_file = os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster")
    had_address = os.path.exists(address_file)
    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield {**os.environ, "RAY_TMPDIR": folder}
    shutil.rmtree(folder, ignore_errors=True)
    assert os.path.exists(address_file) == had_address, "the test left a Ray address behind"


def test_scan_survives_losing_a_worker_node_of_a_cluster(checkpoint, tmp_path, own_ray_tmpdir):
    videos = tmp_path / "videos"
    n = 12
    for i in range(n):
        write_video(videos / f"v{i:02d}.mp4", frames=12)
    report = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "cluster_scan.py"), str(videos),
         str(report), checkpoint, "3"],
        cwd=ROOT, env=own_ray_tmpdir, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_json(done.stdout)
    assert summary["nodes"] >= 2  # the work was spread across nodes
    assert summary["removed_after"] is not None and summary["removed_after"] < n
    assert summary["videos"] == n
    latest = load_videos(str(report))
    assert len(latest) == n and set(latest.status) == {"ok"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scan_runs_as_a_ray_job_submitted_to_a_cluster(
    checkpoint, face_video, tmp_path, own_ray_tmpdir
):
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    port = _free_port()
    # A local dev cluster without token authentication; real clusters pass their token.
    # The job's `python` must be this environment's, as it is on a cluster set up for the job.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    env = {**own_ray_tmpdir, "RAY_AUTH_MODE": "disabled", "PATH": path}
    # Every port of its own: the test session's Ray already holds the default ones.
    ports = [f"--{name}={_free_port()}" for name in (
        "port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "runtime-env-agent-port", "metrics-export-port", "node-manager-port",
        "object-manager-port", "ray-client-server-port")]  # fmt: skip
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--num-cpus", "2", "--include-dashboard",
         "true", "--dashboard-port", str(port), *ports, "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    report = tmp_path / "report"
    try:
        submit = [ray_cli, "job", "submit", "--address", f"http://127.0.0.1:{port}",
                  "--working-dir", ROOT, "--", "python", "-m", "jobs", "scan",
                  os.path.dirname(face_video), "--out", str(report), "--checkpoint", checkpoint,
                  "--frames", "2", "--json"]  # fmt: skip
        deadline = time.monotonic() + 240
        while True:  # the job agent takes a while to come up, longer on a busy machine
            done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=300)
            ran = "Running entrypoint" in done.stdout + done.stderr
            if done.returncode == 0 or ran or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "succeeded" in done.stdout + done.stderr
        assert last_json(done.stdout)["ok"] == 1
        assert list(load_videos(str(report)).status) == ["ok"]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
