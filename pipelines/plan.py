"""A pipeline is a `Plan`: a plain list of stages, built from a config before anything runs.

Each stage says what it reads and what it produces. Small values (`Records` of seeds, a `SeedModel`, targets)
live on the driver; large ones never do: a corpus stage streams rows through operators into Parquet (a signature
store, a result) and produces a *handle* to it. `Plan.describe()` (the CLI's `--plan`) shows the whole flow:

    pipeline classify (executor ray): 6 stages
       1. read_seeds     driver  config.seeds -> seeds: Records
       2. encode_seeds   flow    seeds -> EncodeSignatures(cpus=0.5 x1, batch=32) -> seed_signatures: Table
       ...

Tests assert plans on CPU without running them (`plan.stage("encode_corpus").steps[0].map_batches_kwargs()`),
as ray.data.llm's CPU tests do; `execute(plan, run)` runs one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qscope.errors import InputError
from qscope.pipelines.flow import Step
from qscope.pipelines.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    kind: str
    """"driver" (small values on the driver) or "flow" (rows streamed through `steps` by Ray Data / in-process)."""
    reads: tuple[str, ...]
    produces: dict[str, str]
    """Name → what it is (shown by describe)."""
    fn: Callable[[Run], dict | None]
    """fn(run) -> {name: value} for every name in `produces`."""
    steps: list[Step] = field(default_factory=list)
    doc: str = ""

    def describe(self) -> str:
        reads = ", ".join(self.reads) or "-"
        made = ", ".join(f"{k}: {v}" for k, v in self.produces.items()) or "-"
        from qscope.pipelines.flow import fused

        # "A + B": steps that run in one actor (same resources and batch size)
        ops = " -> ".join(" + ".join(s.describe() for s in chain) for chain in fused(self.steps))
        middle = f" -> {ops}" if ops else ""
        doc = f"   # {self.doc}" if self.doc else ""
        return f"{self.name:<15} {self.kind:<6} {reads}{middle} -> {made}{doc}"


@dataclass
class Plan:
    pipeline: str
    config: Any
    stages: list[Stage]
    inputs: tuple[str, ...] = ("config",)

    def __post_init__(self):
        have = set(self.inputs)
        for s in self.stages:
            missing = [r for r in s.reads if r not in have and not r.startswith("config.")]
            if missing:
                raise ValueError(f"plan {self.pipeline}: stage {s.name} reads {missing}, produced by no earlier stage")
            have |= set(s.produces)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r} in plan {self.names}")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def describe(self) -> str:
        executor = getattr(self.config, "executor", "?")
        lines = [f"pipeline {self.pipeline} (executor {executor}): {len(self.stages)} stages"]
        lines += [f"  {i + 1:>2}. {s.describe()}" for i, s in enumerate(self.stages)]
        return "\n".join(lines)


class Run:
    """One execution: its id, executor, progress, and the values stages have produced so far."""

    def __init__(
        self, config: Any, executor: str = "local", run_id: str | None = None, progress: Progress | None = None
    ):
        self.config, self.executor = config, executor
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        self.progress = progress or Progress(executor)
        self.values: dict[str, Any] = {"config": config}
        self.timings: dict[str, float] = {}
        self.cleanup: list[Callable[[], None]] = []
        """Run at the end whatever happens (locks are released here)."""

    def __getitem__(self, name: str) -> Any:
        if name not in self.values:
            raise InputError(f"run {self.run_id}: no value {name!r} (no earlier stage produced it)")
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    @property
    def counter(self):
        return self.progress.handle


def execute(plan: Plan, run: Run) -> Run:
    """Run every stage in order; the run's cleanups (lock releases) happen whatever the outcome."""
    try:
        for stage in plan.stages:
            t0 = time.perf_counter()
            for name in stage.reads:
                if not name.startswith("config."):
                    run[name]  # noqa: B018 - fails with a clear message if missing
            produced = stage.fn(run) or {}
            unexpected = set(produced) - set(stage.produces)
            if unexpected:
                raise RuntimeError(f"stage {stage.name} produced {sorted(unexpected)} it does not declare")
            run.values.update(produced)
            run.timings[stage.name] = round(time.perf_counter() - t0, 2)
            log.info("stage %s done in %.1fs", stage.name, run.timings[stage.name])
    finally:
        for fn in reversed(run.cleanup):
            try:
                fn()
            except Exception:  # noqa: BLE001 - a failing cleanup must not hide the run's own error
                log.exception("cleanup failed")
    return run
