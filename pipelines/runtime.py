"""Starting Ray: an embedded local instance by default (safe on 2 cores), or a cluster by address."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
    """Connect to `address` / `RAY_ADDRESS` if given (a cluster, or inside `ray job submit`), else start an
    embedded local Ray with at most 2 CPUs' worth of scheduling slots and no dashboard.

    Operators ask for fractional CPUs, so a 2-core local Ray never deadlocks on actor placement.
    """
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(include_dashboard=False, log_to_driver=not quiet, configure_logging=True,
                  logging_level=logging.WARNING)
    if address:
        ray.init(address=address, log_to_driver=not quiet, logging_level=logging.WARNING)
    else:
        n = num_cpus or min(os.cpu_count() or 2, int(os.environ.get("QSCOPE_RAY_CPUS", "2")))
        ray.init(num_cpus=n, object_store_memory=512 * 1024 * 1024, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = not quiet
    ctx.print_on_execution_start = False if quiet else ctx.print_on_execution_start
    return ray


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
