"""Quieter logs for the embedded Ray instance's worker processes. Its own small module: every
worker process of the instance imports it (Ray Data's and Ray Train's internal actors too), so
it imports nothing heavy."""

from __future__ import annotations

import logging
import threading

# Ray Train's placement-group cleaner asks the dashboard's state API, every second, whether the
# training controller still lives, so that a cluster it outlives gets its resources back. An
# embedded instance has no dashboard and ends with this process: the cleaner has nothing to do,
# but said so in a warning a second for a whole training run, and in a traceback at its end;
# and with another Ray instance on the machine (a scan running meanwhile), its thread died on
# "Found multiple active Ray instances" with a traceback of its own.
EMBEDDED_QUIET_LOGGERS = (
    "ray.train.v2._internal.execution.controller.placement_group_cleaner",
    "ray.train.v2._internal.callbacks.placement_group_callback",
)
CLEANER_THREAD = "PlacementGroupCleanerMonitor"


def quiet_embedded_worker() -> None:
    """Run in every worker process of the embedded instance, before any task."""
    for name in EMBEDDED_QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    previous = threading.excepthook

    def excepthook(args: threading.ExceptHookArgs) -> None:
        if args.thread is None or args.thread.name != CLEANER_THREAD:
            previous(args)

    threading.excepthook = excepthook
