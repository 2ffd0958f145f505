"""Where the jobs run: a Ray cluster (RAY_ADDRESS, or an address given), else an embedded local
Ray started here."""

from __future__ import annotations

import logging
import os

import ray

from jobs.raylog import quiet_embedded_worker


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address` (or RAY_ADDRESS), else start an embedded local Ray."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # "local": always a new embedded instance, never a cluster someone left running here.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env={"worker_process_setup_hook": quiet_embedded_worker},
        )
