"""Live progress of long stages on stderr: rows done / total (when known), rows/s, ETA.

Operators count what they process into a `Counter` — a plain object in-process, or one small Ray actor per run
that every actor reports to (fire-and-forget, a few bytes per batch). A reporter thread on the driver polls it and
writes one line per interval to stderr (a redrawn line on a terminal), so `ray job logs` shows progress too:

    [qscope] encode_corpus: 12,288 / 100,000 rows (12.3%), 851 rows/s, ETA 1:43, 3 rejected
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager

INTERVAL_S = float(os.environ.get("QSCOPE_PROGRESS_INTERVAL", "10"))


class Counter:
    """Rows processed and rejected per stage, and when the first and the last batch were counted."""

    def __init__(self):
        self.rows: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)
        self.span: dict[str, list[float]] = {}
        self.nodes: dict[str, set] = defaultdict(set)
        self.out: dict[str, int] = defaultdict(int)

    def add(self, stage: str, rows: int, rejected: int = 0, node: str | None = None, out: int = 0) -> None:
        now = time.time()
        self.rows[stage] += int(rows)
        self.rejected[stage] += int(rejected)
        self.out[stage] += int(out)
        if node:
            self.nodes[stage].add(node)
        if rows:
            # [first, last, rows of the first batch]: those rows were done before `first`, so they do not count
            # toward the rate between first and last (with a few large batches they would inflate it ~1.5x).
            first_last = self.span.setdefault(stage, [now, now, int(rows)])
            first_last[1] = now

    def get(self, stage: str) -> tuple[int, int]:
        return self.rows.get(stage, 0), self.rejected.get(stage, 0)

    def rows_out(self, stage: str) -> int:
        return self.out.get(stage, 0)

    def stats(self) -> dict[str, dict]:
        """Per stage: rows, and rows/s between the first and the last counted batch (start-up excluded): the rows
        counted after the first batch over the time from the first batch to the last."""
        out = {}
        for stage, (first, last, first_rows) in self.span.items():
            rows = self.rows[stage]
            out[stage] = {
                "rows": rows,
                "rows_out": self.out[stage],
                "first": first,
                "last": last,
                "nodes": len(self.nodes[stage]) or None,
                "rows_per_s": round((rows - first_rows) / (last - first), 1) if last > first else None,
            }
        return out


class CounterHandle:
    """What an operator holds: `add(stage, rows, rejected)` on a local Counter or on the run's Ray actor."""

    def __init__(self, target):
        self.target = target

    def add(self, stage: str, rows: int, rejected: int = 0, node: str | None = None, out: int = 0) -> None:
        if isinstance(self.target, Counter):
            self.target.add(stage, rows, rejected, node, out)
        else:
            self.target.add.remote(stage, rows, rejected, node, out)


def _ray_counter():
    import ray

    return ray.remote(num_cpus=0, max_restarts=-1)(Counter).remote()


class Progress:
    """Progress of one run. `with progress.stage("encode_corpus", total=N): ...` reports while the block runs."""

    def __init__(self, executor: str = "local", stream=None, interval_s: float | None = None, enabled: bool = True):
        self.executor, self.stream, self.enabled = executor, stream or sys.stderr, enabled
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self._local = Counter()
        self._actor = None

    @property
    def handle(self) -> CounterHandle:
        if self.executor == "ray":
            if self._actor is None:
                self._actor = _ray_counter()
            return CounterHandle(self._actor)
        return CounterHandle(self._local)

    def stats(self) -> dict[str, dict]:
        """`Counter.stats()` of this run (from the Ray actor when the run is on Ray)."""
        try:
            if self.executor == "ray" and self._actor is not None:
                import ray

                return ray.get(self._actor.stats.remote())
            return self._local.stats()
        except Exception:  # noqa: BLE001 - statistics are a report, never a reason to fail
            return {}

    def rows_out(self, stage: str) -> int:
        """Rows the stage's last operator emitted (what its sink must have written)."""
        if self.executor == "ray" and self._actor is not None:
            import ray

            return ray.get(self._actor.rows_out.remote(stage))
        return self._local.rows_out(stage)

    def counts(self, stage: str) -> tuple[int, int]:
        if self.executor == "ray" and self._actor is not None:
            import ray

            return ray.get(self._actor.get.remote(stage))
        return self._local.get(stage)

    @contextmanager
    def stage(self, name: str, total: int | None = None):
        """Report `name` every `interval_s` while the block runs, and once at the end."""
        t0 = time.perf_counter()
        stop = threading.Event()
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()

        def loop():
            while not stop.wait(1.0 if tty else self.interval_s):
                self._line(name, total, t0, end="\r" if tty else "\n")

        thread = threading.Thread(target=loop, name=f"progress-{name}", daemon=True) if self.enabled else None
        if thread:
            thread.start()
        try:
            yield self
        finally:
            stop.set()
            if thread:
                thread.join(timeout=5)
            if self.enabled:
                self._line(name, total, t0, end="\n", final=True)

    def _line(self, name: str, total: int | None, t0: float, end: str, final: bool = False) -> None:
        try:
            rows, rejected = self.counts(name)
        except Exception:  # noqa: BLE001 - progress must never break a run (e.g. Ray shutting down)
            return
        dt = max(time.perf_counter() - t0, 1e-9)
        rate = rows / dt
        parts = [f"{rows:,}" + (f" / {total:,} rows ({100 * rows / total:.1f}%)" if total else " rows")]
        parts.append(f"{rate:,.0f} rows/s")
        if total and rate > 0 and not final and rows < total:
            parts.append(f"ETA {_clock((total - rows) / rate)}")
        if final:
            parts.append(f"done in {_clock(dt)}")
        if rejected:
            parts.append(f"{rejected:,} rejected")
        self.stream.write(f"[qscope] {name}: {', '.join(parts)}{' ' * 8 if end == chr(13) else ''}{end}")
        self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
