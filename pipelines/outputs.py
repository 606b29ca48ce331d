"""Outputs a reader can trust: one run per output (a lock), results published only when complete, `_SUCCESS` last.

Layout rules (docs/pipelines.md): a result path holds only what `pyarrow.dataset` / polars read as the result;
the lock, `_SUCCESS`, rejected rows, the seed model, staging folders sit inside under names starting with `_`
(both readers skip them) or beside the result.

`RunLock` is a file created with O_EXCL holding the run id, pid, host and process start time. A second run on
the same output fails at once and names the run that holds it. A lock whose process is gone (same host), or whose
heartbeat stopped (another host sharing the disk), is stale: the next run takes it over, and says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from qscope.errors import QscopeError

log = logging.getLogger(__name__)

LOCK = "_lock"
SUCCESS = "_SUCCESS"
HEARTBEAT_S = 30.0
STALE_S = 300.0
"""A lock from another host is stale when its heartbeat is older than this."""


class OutputBusyError(QscopeError):
    """Another run holds the output (or signature store) this run would write."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux): tells a reused pid from the lock's owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or _start_time(pid) in (None, start)


class RunLock:
    """`with RunLock(dir, run_id): ...` — exclusive use of `dir` by one run."""

    def __init__(self, directory: str | Path, run_id: str, what: str = "output"):
        self.dir, self.run_id, self.what = Path(directory), run_id, what
        self.path = self.dir / LOCK
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _info(self) -> dict:
        pid = os.getpid()
        return {
            "run_id": self.run_id,
            "pid": pid,
            "host": socket.gethostname(),
            "start": _start_time(pid),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def acquire(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self._info(), f)
            self._thread = threading.Thread(target=self._heartbeat, name="qscope-lock", daemon=True)
            self._thread.start()
            return
        raise OutputBusyError(f"{self.what} {self.dir} is being taken by another run at this moment; retry")

    def _take_over_if_stale(self) -> None:
        try:
            info = json.loads(self.path.read_text() or "{}")
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile
        except (OSError, json.JSONDecodeError):
            info, age = {}, STALE_S + 1  # a half-written lock from a crash
        same_host = info.get("host") == socket.gethostname()
        if same_host and info.get("pid") and _alive(int(info["pid"]), info.get("start")):
            raise self._busy(info)
        if not same_host and age < STALE_S:
            raise self._busy(info)
        # Stale: move it aside under a unique name first, so of two runs taking over only one succeeds.
        aside = self.dir / f"{LOCK}.stale-{os.getpid()}-{time.time_ns()}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path, aside)
            aside.unlink(missing_ok=True)
            log.warning(
                "%s %s: taking over the stale lock of run %s (pid %s on %s)",
                self.what,
                self.dir,
                info.get("run_id", "?"),
                info.get("pid", "?"),
                info.get("host", "?"),
            )

    def _busy(self, info: dict) -> OutputBusyError:
        return OutputBusyError(
            f"{self.what} {self.dir} is in use by run {info.get('run_id', '?')} (pid {info.get('pid', '?')} on "
            f"{info.get('host', '?')}, started {info.get('started_at', '?')}); wait for it to finish or choose "
            f"another output. If that run is gone, delete {self.path}"
        )

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        try:
            info = json.loads(self.path.read_text())
            if info.get("run_id") == self.run_id:
                self.path.unlink()
        except (OSError, json.JSONDecodeError):
            pass


def staging_dir(directory: str | Path, run_id: str, name: str = "") -> Path:
    """A private folder for this run's parts inside `directory` (skipped by readers: `_` prefix)."""
    path = Path(directory) / f"_staging-{run_id}" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def clear_stale_staging(directory: str | Path) -> None:
    """Remove staging folders of earlier runs (call with the lock held: no other run is writing)."""
    d = Path(directory)
    if d.is_dir():
        for p in d.glob("_staging-*"):
            shutil.rmtree(p, ignore_errors=True)


def visible_entries(directory: Path) -> list[Path]:
    """What a reader of `directory` sees as data (names not starting with `_` or `.`)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if not p.name.startswith(("_", ".")))


def publish_parts(staged: Path, result: Path, run_id: str) -> list[str]:
    """Make the directory `result` hold exactly the staged Parquet parts (old parts go, staged ones come in).

    A directory holding anything but Parquet parts is refused: `--out` must never delete a user's files.
    """
    from qscope.errors import InputError

    if result.is_file():  # the single-file result of an older run: moved aside, then gone
        aside = result.with_name(f".{result.name}.old-{run_id}")
        os.rename(result, aside)
        aside.unlink()
    result.mkdir(parents=True, exist_ok=True)
    foreign = [p.name for p in result.iterdir() if not (p.is_file() and p.suffix == ".parquet")]
    if foreign:
        raise InputError(
            f"output directory {result} holds more than Parquet parts ({', '.join(sorted(foreign)[:5])}"
            "); choose a new or empty directory"
        )
    for old in result.iterdir():
        old.unlink()
    names = []
    for part in sorted(staged.rglob("*.parquet")):
        name = part.relative_to(staged).as_posix().replace("/", "-")
        os.rename(part, result / name)
        names.append(name)
    _fsync_dir(result)
    return names


def merge_parts(staged: Path, final: Path, metadata: dict | None = None) -> int:
    """Stream the staged Parquet parts into the one file `final` (atomic; a row group at a time, so memory does
    not grow with the result). Returns the number of rows."""
    import pyarrow.parquet as pq

    from qscope.paths import atomic_path

    parts = sorted(staged.rglob("*.parquet"))
    rows = 0
    with atomic_path(final) as tmp:
        writer = None
        try:
            for part in parts:
                pf = pq.ParquetFile(part)
                for batch in pf.iter_batches(batch_size=65536):
                    if writer is None:
                        schema = batch.schema
                        if metadata:
                            schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
                        writer = pq.ParquetWriter(tmp, schema)
                    writer.write_batch(batch.cast(writer.schema) if batch.schema != writer.schema else batch)
                    rows += batch.num_rows
            if writer is None:
                raise ValueError(f"merge_parts: no rows staged in {staged}")
        finally:
            if writer is not None:
                writer.close()
    return rows


def replace_dir(staged: Path, final: Path, run_id: str) -> None:
    """Put the staged directory at `final`, the old one (if any) moved aside first and deleted last."""
    aside = None
    if final.exists():
        aside = final.with_name(f"_old-{final.name}-{run_id}")
        os.rename(final, aside)
    os.rename(staged, final)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def mark_success(directory: str | Path, run_id: str, info: dict) -> Path:
    """Write `<directory>/_SUCCESS` (JSON with the run id) atomically: the last thing a run does."""
    from qscope.paths import atomic_path

    marker = Path(directory) / SUCCESS
    with atomic_path(marker) as tmp:
        tmp.write_text(
            json.dumps(
                {"run_id": run_id, **info, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                default=str,
            )
        )
    return marker


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
