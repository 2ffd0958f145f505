"""One scan at a time per report folder.

A scan takes REPORT_DIR/.lock (created exclusively) and refreshes its heartbeat every
HEARTBEAT_S seconds from a background thread. A second scan refuses with a message naming the
running one. A lock left by a killed scan does not block for ever: it is stale when its process
is gone (same host) or its heartbeat is older than STALE_AFTER_S, and is then taken over.

In an object store (s3://...) there is no exclusive create through pyarrow: the lock is an
object holding its holder and heartbeat time, rewritten every HEARTBEAT_S. A scan refuses while
a fresh lock of another run is there; it writes its own, waits RACE_WAIT_S and reads it back, and
refuses when another scan's lock replaced it meanwhile (two scans starting in the same instant
can still both pass: there the lock narrows the window, it cannot close it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from datetime import UTC, datetime

from pipeline.reports.store import ReportError, local_dir, resolve

HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0
TAKEOVER_WAIT_S = 10.0  # how long to keep trying while other scans take over a stale lock
GUARD_STALE_S = 10.0  # a take-over guard older than this was left by a killed scan
RACE_WAIT_S = 1.0  # object stores: how long a new lock waits before reading itself back


class ReportLocked(Exception):
    """Another scan is writing to this report folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ScanLock(report_dir: str, run_id: str):  # noqa: N802 (a factory that reads as the class)
    """The lock of a report folder: a file on local disks, an object in object stores."""
    if local_dir(report_dir) is None:
        return ObjectStoreLock(report_dir, run_id)
    return FileLock(report_dir, run_id)


def _is_stale(info: dict) -> bool:
    """Whether a lock's holder is gone: a live one refreshes the heartbeat every HEARTBEAT_S,
    whatever its host; on this host a holder whose process has ended is gone at once."""
    if info["age_s"] > STALE_AFTER_S:
        return True
    return (
        "pid" in info
        and info.get("host") == socket.gethostname()
        and not _pid_alive(int(info["pid"]))
    )


def _refusal(info: dict, where: str) -> ReportLocked:
    return ReportLocked(
        f"another scan is writing to this report folder: run {info.get('run_id')} (pid "
        f"{info.get('pid')} on {info.get('host')}, since {info.get('started_at')}); wait for it "
        f"to finish, or remove {where} if that process is gone"
    )


class _HeartbeatLock:
    """What both locks share: a thread that refreshes the heartbeat every HEARTBEAT_S until
    released (or until `_refresh` says the lock is gone), and the `with` protocol."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _refresh(self) -> bool:
        """Refresh the heartbeat; False when there is no lock left to refresh."""
        raise NotImplementedError

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, daemon=True, name="scan-lock")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self._refresh():
                return

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class ObjectStoreLock(_HeartbeatLock):
    def __init__(self, report_dir: str, run_id: str):
        super().__init__(run_id)
        self.fs, root = resolve(report_dir)
        self.path = f"{root}/.lock"
        self.uri = report_dir.rstrip("/") + "/.lock"
        self.started_at = datetime.now(UTC).isoformat()

    def _write(self) -> None:
        info = {"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": self.started_at, "heartbeat": time.time()}  # fmt: skip
        with self.fs.open_output_stream(self.path) as f:
            f.write(json.dumps(info).encode())

    def holder(self) -> dict | None:
        try:
            with self.fs.open_input_stream(self.path) as f:
                info = json.loads(f.read())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:  # not ours: treat as held until it goes stale by age
            info = {"heartbeat": 0.0}
        return {**info, "age_s": time.time() - float(info.get("heartbeat", 0.0))}

    def acquire(self) -> None:
        info = self.holder()
        others = info is not None and info.get("run_id") != self.run_id
        if others and not _is_stale(info):  # a stale one was left by a killed scan
            raise _refusal(info, self.uri)
        self._write()
        time.sleep(RACE_WAIT_S)
        info = self.holder()
        if info is not None and info.get("run_id") != self.run_id:
            raise _refusal(info, self.uri)
        self._start_heartbeat()

    def _refresh(self) -> bool:
        try:
            self._write()
        except OSError:
            return False  # the store went away: the scan's own writes will say so
        return True

    def release(self) -> None:
        self._stop_heartbeat()
        with contextlib.suppress(OSError):
            info = self.holder()
            if info is not None and info.get("run_id") == self.run_id:
                self.fs.delete_file(self.path)


class FileLock(_HeartbeatLock):
    def __init__(self, report_dir: str, run_id: str):
        super().__init__(run_id)
        self.path = os.path.join(local_dir(report_dir), ".lock")

    def _content(self) -> str:
        return json.dumps(
            {
                "run_id": self.run_id,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": datetime.now(UTC).isoformat(),
            }
        )

    def holder(self) -> dict | None:
        """What the lock says, with its heartbeat's age; None when there is no lock."""
        try:
            age = time.time() - os.path.getmtime(self.path)
            with open(self.path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
        except json.JSONDecodeError:  # being written right now, or its writer died mid-write
            info = {}
        return {**info, "age_s": age}

    def is_stale(self, info: dict) -> bool:
        return _is_stale(info)

    def acquire(self) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except OSError as exc:  # a file of that name, a read-only or missing mount, no access
            raise ReportError(
                f"cannot create the report folder {os.path.dirname(self.path)}: "
                f"{exc.strerror or exc}"
            ) from exc
        deadline = time.monotonic() + TAKEOVER_WAIT_S
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is not None and not self.is_stale(info):
                    raise _refusal(info, self.path) from None
                if time.monotonic() > deadline:
                    raise ReportLocked(
                        f"could not take {self.path}: other scans keep taking it"
                    ) from None
                if info is not None:
                    self._remove_if_stale()
                continue
            except OSError as exc:  # a read-only folder, no write access
                raise ReportError(
                    f"cannot write to the report folder {os.path.dirname(self.path)}: "
                    f"{exc.strerror or exc}"
                ) from exc
            with os.fdopen(fd, "w") as f:
                f.write(self._content())
            self._start_heartbeat()
            return

    def _remove_if_stale(self) -> None:
        """Remove a killed scan's lock. Two scans may find the same stale lock at once; a guard
        file makes them take turns, and each looks again under the guard, so that one never
        removes the new lock the other has just created."""
        guard = self.path + ".takeover"
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - os.path.getmtime(guard) > GUARD_STALE_S:
                    os.unlink(guard)  # left by a scan killed in the middle of a take-over
            time.sleep(0.05)
            return
        os.close(fd)
        try:
            info = self.holder()
            if info is not None and self.is_stale(info):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(guard)

    def _refresh(self) -> bool:
        try:
            os.utime(self.path)
        except FileNotFoundError:
            return False
        return True

    def release(self) -> None:
        self._stop_heartbeat()
        info = self.holder()
        if info is not None and info.get("run_id") == self.run_id:
            os.unlink(self.path)
