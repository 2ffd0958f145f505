"""The GPU's busy share during each benchmark's pipeline run: the mean of nvidia-smi's
utilisation samples between the pipeline line's started_at and ended_at.

    python benchmarks/gpu_busy.py GPU_CSV BENCH_LOG...

GPU_CSV: `nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 500`;
BENCH_LOG: what benchmarks/bench_scan.py printed. Prints one JSON line per log.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime


def samples(path: str) -> list[tuple[float, float]]:
    """(epoch seconds, utilisation %) of each sample (nvidia-smi writes local time)."""
    out = []
    with open(path) as f:
        for row in csv.reader(f):
            try:
                when = datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
                out.append((when, float(row[2].strip().split()[0])))
            except (ValueError, IndexError):
                continue  # the header, or a line cut short when the sampler was stopped
    return out


def main(csv_path: str, *logs: str) -> None:
    util = samples(csv_path)
    for log in logs:
        try:
            with open(log) as f:
                lines = [json.loads(x) for x in f if x.startswith("{")]
        except OSError:
            continue
        pipe = next((x for x in lines if x.get("stage") == "pipeline"), None)
        if not pipe or "started_at" not in pipe:
            print(json.dumps({"log": log, "gpu_busy": None}))
            continue
        inside = [u for t, u in util if pipe["started_at"] <= t <= pipe["ended_at"]]
        busy = sum(inside) / len(inside) if inside else None
        print(json.dumps({"log": log, "gpu_busy_percent": busy, "samples": len(inside),
                          "videos_per_s": pipe["videos_per_s"]}))  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
