"""Reports in an object store: a real S3-compatible server (moto's standalone server, a process
on a free loopback port), reached through pyarrow's S3 filesystem with the endpoint from the
standard AWS variables, exactly as a user's scan reaches its bucket. No mocked client."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner
from fixtures import write_video
from test_audit import kill_9_once, scan, scan_cmd

from jobs.cli import cli
from pipeline.lock import ReportLocked, ScanLock
from pipeline.reports import load_videos

pytest.importorskip("moto", reason="make test installs moto[server]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's server in its own process; `stop()` takes it away as a failing store would go."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.1)

    def env(self) -> dict:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip

    def bucket(self, name: str) -> str:
        fs = pafs.S3FileSystem(endpoint_override=self.url, access_key="test", secret_key="test",
                               region="us-east-1", allow_bucket_creation=True)  # fmt: skip
        fs.create_dir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3, monkeypatch):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


def test_a_scan_into_a_bucket_reads_back_and_a_rescan_skips_what_is_unchanged(
    ray_session, s3_env, checkpoint, tmp_path
):
    videos = tmp_path / "videos"
    for name in ("a", "b"):
        write_video(videos / f"{name}.mp4", frames=6)
    (videos / "broken.mp4").write_text("not a video")
    report = s3_env.bucket("scans") + "/nightly/report"
    first = scan(videos, report, checkpoint)
    assert (first["videos"], first["ok"], first["error"]) == (3, 2, 1)
    table = load_videos(report)
    assert sorted(table.status) == ["error", "ok", "ok"]
    second = scan(videos, report, checkpoint)
    # The two scored videos are skipped; the broken one is tried again (a failure may pass).
    assert (second["skipped"], second["videos"]) == (2, 1)
    assert load_videos(report).path.is_unique


def _pieces(s3: S3Server, bucket: str, prefix: str) -> int:
    fs = pafs.S3FileSystem(endpoint_override=s3.url, access_key="test", secret_key="test",
                           region="us-east-1")  # fmt: skip
    selector = pafs.FileSelector(f"{bucket}/{prefix}/videos", allow_not_found=True)
    return sum(1 for i in fs.get_file_info(selector) if i.path.endswith(".parquet"))


def test_kill_9_mid_scan_into_a_bucket_then_rerun_leaves_every_video_once(
    ray_session, s3_env, checkpoint, tmp_path
):
    videos = tmp_path / "videos"
    n = 8
    for i in range(n):
        write_video(videos / f"v{i:02d}.mp4", frames=12)
    report = s3_env.bucket("killed") + "/report"
    cmd = scan_cmd(videos, report, checkpoint, "--frames", "4", "--flush-seconds", "0",
                   "--batch-size", "1")  # fmt: skip
    kill_9_once(cmd, lambda: _pieces(s3_env, "killed", "report") >= 2,
                env={**os.environ, **s3_env.env()})  # fmt: skip
    done_before = len(load_videos(report))
    assert 2 <= done_before < n, "kill the scan while it is still running"
    summary = scan(videos, report, checkpoint, "--frames", "4")  # the rerun, in this process
    assert summary["skipped"] == done_before and summary["videos"] == n - done_before
    table = load_videos(report)
    assert len(table) == n and table.path.is_unique and (table.status == "ok").all()


def test_a_second_scan_into_the_same_bucket_report_is_refused(s3_env, checkpoint, face_video):
    report = s3_env.bucket("locked") + "/report"
    with ScanLock(report, "20260101T000000Z-first1"):
        with pytest.raises(ReportLocked, match="20260101T000000Z-first1"):
            ScanLock(report, "second").acquire()
        result = CliRunner().invoke(
            cli, ["scan", os.path.dirname(face_video), "--out", report, "--checkpoint",
                  checkpoint],
        )  # fmt: skip
        assert result.exit_code == 3
        assert "another scan" in result.output and "20260101T000000Z-first1" in result.output
    # released: the next scan may take it
    with ScanLock(report, "third"):
        pass


def test_an_object_store_that_goes_away_mid_scan_ends_the_run_with_status_1(
    ray_session, checkpoint, tmp_path, monkeypatch
):
    import threading

    server = S3Server()
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    videos = tmp_path / "videos"
    for i in range(6):
        write_video(videos / f"v{i:02d}.mp4", frames=12)
    report = server.bucket("gone") + "/report"

    def take_the_store_away():  # once the first results are in it, as a failing store would
        deadline = time.monotonic() + 180
        while _pieces(server, "gone", "report") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()

    watcher = threading.Thread(target=take_the_store_away, daemon=True)
    watcher.start()
    try:
        result = CliRunner().invoke(
            cli, ["scan", str(videos), "--out", report, "--checkpoint", checkpoint, "--frames",
                  "4", "--flush-seconds", "0", "--batch-size", "1", "--quiet"],
        )  # fmt: skip
    finally:
        server.stop()
        watcher.join()
    assert result.exit_code == 1, result.output
    assert "object store" in result.output and server.url in result.output
    assert isinstance(result.exception, SystemExit)  # a message, never a traceback
