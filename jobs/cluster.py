"""Where the jobs run: a Ray cluster (RAY_ADDRESS, or an address given), else an embedded local
Ray started here."""

from __future__ import annotations

import logging
import os

import ray

from jobs.raylog import quiet_embedded_worker

# Ray Data's warning when progress bars are off, as the jobs turn them off (their own progress
# lines take their place).
PROGRESS_OFF = "Progress bars disabled"
AUTH_NOTICE = "ray._private.authentication.authentication_token_setup"


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address` (or RAY_ADDRESS), else start an embedded local Ray."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # Ray turns token authentication on for a new local instance and says so in a warning
        # at every start: nothing for a reader of the scan's log to act on.
        logging.getLogger(AUTH_NOTICE).setLevel(logging.ERROR)
        # "local": always a new embedded instance, never a cluster someone left running here.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env={"worker_process_setup_hook": quiet_embedded_worker},
        )
    quiet_data_console()


def quiet_data_console() -> None:
    """Ray Data's console lines for every dataset (its start, its plan, that it finished, that
    progress bars are off) go to its log file only (the session's logs/ray-data.log): a scan
    prints its own progress and summary, and an overnight log should hold those and the
    warnings that need a reader."""
    import ray.data  # noqa: F401  (configures Ray Data's loggers)

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # the console; not the file
            handler.setLevel(logging.WARNING)
            handler.addFilter(_not_progress_off)


def _not_progress_off(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(PROGRESS_OFF)
