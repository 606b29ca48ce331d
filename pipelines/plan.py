"""A pipeline is a `Plan`: a plain list of stages, built from a config before anything runs.

Two kinds of stage:
- `map`: an operator class run over a table with `ds.map_batches(**stage.map_batches_kwargs())` (Ray) or batch by
  batch in-process (`executor="local"`); its constructor kwargs may name values that earlier stages produce
  (`Ref("targets")`), resolved at run time.
- `driver`: a function of the run context (reading inputs, selecting targets, dedup, writing, the report).

Tests assert the plan on CPU without running it (`plan.describe()`, `plan.stage("encode").map_batches_kwargs()`),
as ray.data.llm's CPU tests do; `execute(plan)` runs it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from qscope.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ref:
    """A constructor argument produced by an earlier stage (looked up in the run context)."""

    key: str

    def __repr__(self) -> str:
        return f"<{self.key}>"


@dataclass
class Stage:
    name: str
    kind: str  # "map" | "driver"
    input: str | None = None
    """Context key of the input table (map stages)."""
    output: str | None = None
    """Context key the result is stored under."""
    operator: type | None = None
    constructor_kwargs: dict = field(default_factory=dict)
    resources: dict = field(default_factory=lambda: {"num_cpus": 0.5, "num_gpus": 0.0, "concurrency": 1})
    batch_size: int = 16
    local_below: int = 0
    """Map stages: run in-process (no actor start-up) when the input has fewer rows than this — model-free
    steps on small tables finish before a Ray actor would have imported its libraries."""
    fn: Callable[[dict], Any] | None = None
    """Driver stages: fn(context) -> value stored under `output`."""
    doc: str = ""

    def resolved_kwargs(self, ctx: dict) -> dict:
        def res(v):
            if isinstance(v, Ref):
                if v.key not in ctx:
                    raise InputError(f"stage {self.name}: needs {v.key!r}, which no earlier stage produced")
                return ctx[v.key]
            if isinstance(v, dict):
                return {k: res(x) for k, x in v.items()}
            return v

        return res(self.constructor_kwargs)

    def map_batches_kwargs(self, ctx: dict | None = None) -> dict:
        """`ds.map_batches(**kw)` for this stage (constructor refs resolved from ctx when given)."""
        if self.kind != "map":
            raise InputError(f"stage {self.name} is a driver stage, not a map_batches stage")
        kwargs = self.resolved_kwargs(ctx) if ctx is not None else dict(self.constructor_kwargs)
        return self.operator.map_batches_kwargs(kwargs, self.resources, self.batch_size)

    def describe(self) -> str:
        if self.kind == "driver":
            return f"{self.name:<16} driver   -> {self.output or '-':<14} {self.doc}"
        res = self.resources
        gpu = f" gpus={res['num_gpus']}" if res.get("num_gpus") else ""
        args = ", ".join(f"{k}={v!r}" for k, v in self.constructor_kwargs.items() if k != "model_spec")
        if len(args) > 90:
            args = args[:87] + "..."
        local = f" in-process below {self.local_below} rows," if self.local_below else ""
        return (
            f"{self.name:<16} map      {self.input} -> {self.output}: {self.operator.__name__}"
            f"(cpus={res['num_cpus']}{gpu} x{res['concurrency']}, batch={self.batch_size}){local} {args}"
        )


@dataclass
class Plan:
    pipeline: str
    config: Any
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r} in plan {[s.name for s in self.stages]}")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def describe(self) -> str:
        lines = [f"pipeline {self.pipeline}: {len(self.stages)} stages"]
        lines += [f"  {i + 1:>2}. {s.describe()}" for i, s in enumerate(self.stages)]
        return "\n".join(lines)


def run_map_local(stage: Stage, table: pa.Table, ctx: dict) -> pa.Table:
    """Run a map stage in this process, batch by batch (tests, `executor: local`)."""
    op = stage.operator(**stage.resolved_kwargs(ctx), resources=stage.resources)
    outs = [op(table.slice(i, stage.batch_size)) for i in range(0, table.num_rows, stage.batch_size)]
    outs = [o for o in outs if o.num_rows] or outs[:1]
    if not outs:
        return table
    return pa.concat_tables(outs, promote_options="permissive")


def run_map_ray(stage: Stage, table: pa.Table, ctx: dict) -> pa.Table:
    """Run a map stage on Ray Data (an actor pool with the stage's fractional resources)."""
    import ray

    ds = ray.data.from_arrow(table)
    ds = ds.map_batches(**stage.map_batches_kwargs(ctx))
    refs = ds.to_arrow_refs()
    parts = [t for t in ray.get(refs) if t.num_rows]
    if not parts:
        return table.slice(0, 0)
    return pa.concat_tables(parts, promote_options="permissive")


def execute(plan: Plan, ctx: dict | None = None, executor: str = "ray", on_stage: Callable | None = None) -> dict:
    """Run every stage in order; returns the context (all stage outputs, plus `timings`)."""
    ctx = {} if ctx is None else ctx
    ctx.setdefault("timings", {})
    for stage in plan.stages:
        t0 = time.perf_counter()
        if stage.kind == "driver":
            value = stage.fn(ctx)
        else:
            table = ctx.get(stage.input)
            if table is None:
                raise InputError(f"stage {stage.name}: no input {stage.input!r}")
            if table.num_rows == 0:
                value = table
            else:
                ray_here = executor == "ray" and table.num_rows >= stage.local_below
                value = (run_map_ray if ray_here else run_map_local)(stage, table, ctx)
        if stage.output:
            ctx[stage.output] = value
        ctx["timings"][stage.name] = round(time.perf_counter() - t0, 2)
        log.info("stage %s done in %.1fs", stage.name, ctx["timings"][stage.name])
        if on_stage:
            on_stage(stage, ctx)
    return ctx
