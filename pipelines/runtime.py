"""Starting Ray for a run: join the cluster the user already has, or start a private one.

- `address` given (or `RAY_ADDRESS`, as inside `ray job submit`): connect to it.
- `address="local"`: always start a private embedded Ray (2 CPU slots on a small machine, no dashboard), even
  when a cluster is running on this machine.
- neither: join a Ray already running on this machine (`ray start --head`) — without resource arguments, which
  Ray refuses when connecting — and say so on stderr; with none running, start the private one.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

log = logging.getLogger(__name__)

OBJECT_STORE_BYTES = 512 * 1024 * 1024
# Ray Data's share of it on a private Ray: ~16 signature blocks of 4k rows x 256 features (8 MB each) in flight.
DATA_STORE_BYTES = 128 * 1024 * 1024
BLOCK_BYTES = 4 * 1024 * 1024
"""Largest block a read or map task emits. Ray's default (128 MB) makes a read task gather its reader's small
blocks into 128 MB ones: a 1M-row corpus then sat in two blocks, and the read worker held ~400 MB for the whole
encode pass (bench/README.md, "Streaming pipelines at scale"). 4 MB is ~16k short rows, ~1-2k documents of a few KB,
~2k signature rows."""


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
    """Connect or start Ray (see the module doc); returns the `ray` module. Operators ask for fractional CPUs, so
    a 2-core local Ray never deadlocks on actor placement."""
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = dict(log_to_driver=True, logging_level=logging.WARNING, configure_logging=True)
    if address and address != "local":
        ray.init(address=address, **common)
    elif address is None and _running_cluster() and _join(ray, common):
        pass
    else:
        n = num_cpus or min(os.cpu_count() or 2, int(os.environ.get("QSCOPE_RAY_CPUS", "2")))
        store = _bytes_from_env("QSCOPE_RAY_STORE_MB", OBJECT_STORE_BYTES)
        ray.init(address="local", num_cpus=n, object_store_memory=store, include_dashboard=False, **common)
        _bound_read_ahead()
    _small_blocks()
    _quiet_ray_data(quiet)
    return ray


def _join(ray, common: dict) -> bool:
    try:
        ray.init(address="auto", **common)
    except (ConnectionError, RuntimeError) as exc:  # a head that went away between the check and the join
        print(
            f"qscope: the Ray cluster recorded on this machine does not answer ({exc}); starting a private one",
            file=sys.stderr,
        )
        return False
    print(
        "qscope: joined the Ray cluster already running on this machine (--address local starts a private one instead)",
        file=sys.stderr,
    )
    return True


def _running_cluster() -> bool:
    """A Ray head started on this machine (`ray start --head` leaves its address in the temp directory) that
    still answers. A head that crashed or was killed leaves the file behind, and `ray.init(address="auto")` on it
    retries for minutes before failing: a quick TCP connect to its GCS port tells the two apart."""
    try:
        from ray._private.services import find_bootstrap_address

        address = find_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - an internal helper that moved: behave as if none were running
        return False
    if not address:
        return False
    if _answers(address):
        return True
    print(
        f"qscope: the Ray cluster recorded on this machine ({address}) does not answer; starting a private one",
        file=sys.stderr,
    )
    return False


def _answers(address: str, timeout: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _bound_read_ahead() -> None:
    """Cap what a run's Ray Data execution keeps in the object store. Left alone, the readers run ahead of the
    (slow) encode step until the store's data budget is full, so peak memory grows with the corpus up to that
    budget; a fixed cap makes it one constant on a private Ray. A joined cluster keeps the limits its owner set."""
    import ray

    limit = _bytes_from_env("QSCOPE_RAY_DATA_STORE_MB", DATA_STORE_BYTES)
    options = ray.data.DataContext.get_current().execution_options
    options.resource_limits = options.resource_limits.copy(object_store_memory=limit)


def _small_blocks() -> None:
    """Blocks of a few MB for this run (the driver's DataContext: a joined cluster's other jobs keep theirs)."""
    import ray

    ray.data.DataContext.get_current().target_max_block_size = _bytes_from_env("QSCOPE_RAY_BLOCK_MB", BLOCK_BYTES)


def _bytes_from_env(name: str, default: int) -> int:
    """A size the user may override in MB (`name`, e.g. QSCOPE_RAY_BLOCK_MB=8); `default` in bytes."""
    value = os.environ.get(name)
    return default if value is None else int(float(value) * 2**20)


def _quiet_ray_data(quiet: bool) -> None:
    # qscope reports progress itself (pipelines.progress); Ray Data's bars and per-dataset INFO lines would
    # interleave with it on stderr.
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = not quiet
    if quiet:
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
