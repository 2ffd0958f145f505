"""Run by tests/test_audit.py in its own process: a scan on a small multi-node Ray cluster
(ray.cluster_utils.Cluster: a head and two worker nodes on this machine), with one worker node
removed mid-scan. Prints one JSON line."""

import json
import os
import sys
import threading
import time

import ray
from ray.cluster_utils import Cluster

from jobs.scan import run_scan
from pipeline.config import ScanConfig

MIB = 1024**2


def main(video_dir: str, report_dir: str, checkpoint: str, remove_after: int) -> None:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 96 * MIB},
    )
    # One CPU a node: two videos decoding at once must run on two nodes.
    cluster.add_node(num_cpus=1, object_store_memory=96 * MIB)
    doomed = cluster.add_node(num_cpus=1, object_store_memory=96 * MIB)
    cluster.wait_for_nodes()
    removed = {}

    def remove_mid_scan():
        # Once some results are on disk (one piece per video with flush_seconds=0), take a
        # worker node away while the rest of the scan is still running.
        folder = os.path.join(report_dir, "videos")
        while True:
            done = len(os.listdir(folder)) if os.path.isdir(folder) else 0
            if done >= remove_after:
                cluster.remove_node(doomed)
                removed["after"] = done
                return
            time.sleep(0.05)

    threading.Thread(target=remove_mid_scan, daemon=True).start()
    cfg = ScanConfig(
        video_dir=video_dir,
        report_dir=report_dir,
        checkpoint=checkpoint,
        frames=4,
        address=cluster.address,
        flush_seconds=0.0,
        batch_size=1,
        quiet=True,
    )
    summary = run_scan(cfg)
    print(json.dumps({**summary, "removed_after": removed.get("after")}), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
