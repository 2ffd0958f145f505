"""One scan at a time per report folder.

A scan takes REPORT_DIR/.lock (created exclusively) and refreshes its heartbeat every
HEARTBEAT_S seconds from a background thread. A second scan refuses with a message naming the
running one. A lock left by a killed scan does not block for ever: it is stale when its process
is gone (same host) or its heartbeat is older than STALE_AFTER_S, and is then taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from datetime import UTC, datetime

HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0


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


class ScanLock:
    def __init__(self, report_dir: str, run_id: str):
        if "://" in report_dir:
            # Object stores have no exclusive create: the lock is only advisory there.
            self.path = None
        else:
            self.path = os.path.join(os.path.abspath(report_dir), ".lock")
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        # A live holder refreshes the heartbeat every HEARTBEAT_S, whatever its host.
        if info["age_s"] > STALE_AFTER_S:
            return True
        return (
            "pid" in info
            and info.get("host") == socket.gethostname()
            and not _pid_alive(int(info["pid"]))
        )

    def acquire(self) -> None:
        if self.path is None:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is None or self.is_stale(info):
                    # A killed scan's lock: remove it and try again (O_EXCL settles races).
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    continue
                raise ReportLocked(
                    f"another scan is writing to this report folder: run {info.get('run_id')} "
                    f"(pid {info.get('pid')} on {info.get('host')}, since "
                    f"{info.get('started_at')}); wait for it to finish, or remove "
                    f"{self.path} if that process is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(self._content())
            self._thread = threading.Thread(target=self._beat, daemon=True, name="scan-lock")
            self._thread.start()
            return
        raise ReportLocked(f"could not take {self.path}: other scans keep taking it")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        if self.path is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        info = self.holder()
        if info is not None and info.get("run_id") == self.run_id:
            os.unlink(self.path)

    def __enter__(self) -> ScanLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
