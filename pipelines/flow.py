"""A `Flow` streams row blocks from an input through operators into a sink — on Ray Data, or in this process.

    Flow(CorpusInput(source), [Step(EncodeSignatures, {...}, resources, 32)], stage="encode_corpus")
        .write_parquet(staging_dir, executor="ray", progress=progress, partition_col="source_key")

On Ray the input is a Ray Data read (`ray_sources`), each step one `map_batches` with the operator's actor pool
and fractional resources, the sink Ray's Parquet writer (or a streaming iterator whose batches the driver folds
into something small: a top-k, a sample). In-process (`executor: local`, tests and small runs) the same steps run
one after another over the same blocks. Nothing here ever materialises the whole stream.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from qscope.errors import QscopeError
from qscope.operators.base import Resources
from qscope.pipelines.sources import CorpusSource, iter_corpus

READ_CPUS = 0.25
"""Read / write tasks ask for a quarter CPU: whole-CPU tasks next to model actors deadlock 2-core machines."""
IO_TASKS_PER_ACTOR = 1
"""Concurrent read / write tasks per actor of the flow's widest step. One is enough to keep an actor fed (a read
task streams its file block by block), and each task is a worker process of 200-300 MB: two per actor made the
1M-row classify pass peak ~200 MB higher for no speed (bench/README.md, "Streaming pipelines at scale")."""
ROWS_PER_FILE = 20_000
"""Parquet parts are at least this many rows (fewer, larger files than one per batch)."""


@dataclass(frozen=True)
class Ref:
    """A constructor argument known only when the run gets there (a value an earlier stage produces)."""

    name: str

    def __repr__(self) -> str:
        return f"<{self.name}>"


@dataclass
class Step:
    """One operator over every batch: what the plan shows and `map_batches` runs."""

    operator: type
    kwargs: dict = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    batch_size: int = 32

    def resolve(self, values) -> Step:
        """This step with every `Ref` in its kwargs replaced by the run's value of that name."""
        kwargs = {k: values[v.name] if isinstance(v, Ref) else v for k, v in self.kwargs.items()}
        return Step(self.operator, kwargs, self.resources, self.batch_size)

    def map_batches_kwargs(self) -> dict:
        return self.operator.map_batches_kwargs(self.kwargs, self.resources, self.batch_size)

    def describe(self) -> str:
        r = self.resources
        gpu = f" gpus={r.num_gpus}" if r.num_gpus else ""
        return f"{self.operator.__name__}(cpus={r.num_cpus}{gpu} x{r.concurrency}, batch={self.batch_size})"


# --- inputs ------------------------------------------------------------------------------------------------------
@dataclass
class CorpusInput:
    """Corpus files (or an `hf:` dataset), read where the work runs."""

    source: CorpusSource
    limit: int | None = None
    """Read at most this many rows."""

    def describe(self) -> str:
        n = len(self.source.files)
        return (
            f"corpus {self.source.spec} ({n} file{'s' if n != 1 else ''})"
            if not self.source.hub
            else f"corpus {self.source.spec}"
        )


@dataclass
class ParquetInput:
    """Parquet parts (a signature store's partitions, a result): `rows` "good" (not rejected), "rejected" or
    "all"."""

    paths: list[str]
    base_dir: str
    columns: list[str] | None = None
    rows: str = "good"

    def row_filter(self, names=None):
        """The pushed-down filter on `reject_reason` (None when the parts have no such column or rows="all")."""
        if self.rows == "all" or (names is not None and "reject_reason" not in names):
            return None
        f = pc.field("reject_reason")
        return f.is_null() if self.rows == "good" else f.is_valid()

    def describe(self) -> str:
        return f"parquet {self.base_dir} ({len(self.paths)} partition{'s' if len(self.paths) != 1 else ''})"

    def files(self) -> list[str]:
        out = []
        for p in self.paths:
            path = Path(p)
            out += sorted(str(f) for f in path.rglob("*.parquet")) if path.is_dir() else [str(path)]
        return out


@dataclass
class TableInput:
    """A small in-memory table (prompts, candidates), cut into `blocks` so a pool of actors shares it."""

    table: pa.Table
    blocks: int = 1

    def describe(self) -> str:
        return f"table ({self.table.num_rows} rows)"

    def slices(self) -> list[pa.Table]:
        n = max(1, min(self.blocks, self.table.num_rows))
        size = -(-self.table.num_rows // n) if self.table.num_rows else 1
        return [self.table.slice(i, size) for i in range(0, max(self.table.num_rows, 1), size)]


# --- counting wrapper -------------------------------------------------------------------------------------------
class Tracked:
    """Runs a chain of operators — one step, or consecutive steps fused into one actor — and reports rows to the
    run's progress counter (the first step counts rows in, the last the rejected rows out)."""

    def __init__(
        self,
        operators: list[tuple[type, dict]],
        stage: str = "",
        counter=None,
        count_in: bool = False,
        count_rejected: bool = False,
    ):
        self.ops = [operator(**kwargs) for operator, kwargs in operators]
        self.stage, self.counter, self.count_in, self.count_rejected = stage, counter, count_in, count_rejected
        self.node = _node_id() if counter is not None and count_in else None

    def __call__(self, batch) -> pa.Table:
        n_in = _num_rows(batch)
        out = batch
        for op in self.ops:
            out = op(out)
        if self.counter is not None and (self.count_in or self.count_rejected):
            rejected = 0
            if self.count_rejected and "reject_reason" in out.column_names:
                rejected = len(out) - out.column("reject_reason").null_count
            self.counter.add(
                self.stage,
                n_in if self.count_in else 0,
                rejected,
                self.node,
                out.num_rows if self.count_rejected else 0,
            )
        return out

    def teardown(self) -> None:
        for op in self.ops:
            op.teardown()


def _node_id() -> str | None:
    """The Ray node this actor runs on (None in-process): the run reports how many nodes each stage used."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001
        return None


def _num_rows(batch: Any) -> int:
    if hasattr(batch, "num_rows"):
        return batch.num_rows
    if isinstance(batch, dict):
        return len(next(iter(batch.values()), []))
    return len(batch)


def fused(steps: list[Step]) -> list[list[Step]]:
    """Consecutive steps with the same resources and batch size, grouped to run in one actor. Ray Data never fuses
    two actor pools, so each step would otherwise be a pool of its own: a process per actor (~150-300 MB each, most
    of the classify pass's memory at 1M rows, bench/README.md) and an object-store hop per batch between them."""
    chains: list[list[Step]] = []
    for step in steps:
        last = chains[-1][-1] if chains else None
        if last is not None and last.resources == step.resources and last.batch_size == step.batch_size:
            chains[-1].append(step)
        else:
            chains.append([step])
    return chains


# --- the flow ---------------------------------------------------------------------------------------------------
@dataclass
class Flow:
    source: CorpusInput | ParquetInput | TableInput
    steps: list[Step]
    stage: str

    def describe(self) -> str:
        return " -> ".join([self.source.describe(), *(s.describe() for s in self.steps)])

    @property
    def io_concurrency(self) -> int:
        return IO_TASKS_PER_ACTOR * max([1, *(s.resources.concurrency for s in self.steps)])

    # Ray ----------------------------------------------------------------------------------------------------------
    def to_ray(self, counter=None):
        from qscope.pipelines import ray_sources

        ds = ray_sources.read(self.source, READ_CPUS, self.io_concurrency)
        if isinstance(self.source, CorpusInput) and self.source.limit is not None:
            ds = ds.limit(self.source.limit)
        chains = fused(self.steps)
        for i, chain in enumerate(chains):
            kw = chain[0].map_batches_kwargs()
            kw["fn_constructor_kwargs"] = {
                "operators": [(s.operator, s.map_batches_kwargs()["fn_constructor_kwargs"]) for s in chain],
                "stage": self.stage,
                "counter": counter,
                "count_in": i == 0,
                "count_rejected": i == len(chains) - 1,
            }
            kw["fn"] = Tracked
            with warnings.catch_warnings():
                # max_restarts / max_task_retries (bounded retries) have no named parameter in Ray 2.60 yet; Ray's
                # own actor pool reads them from these kwargs.
                warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
                ds = ds.map_batches(**kw)
        return ds

    # in-process ---------------------------------------------------------------------------------------------------
    def iter_local(self, counter=None) -> Iterator[pa.Table]:
        if isinstance(self.source, CorpusInput):
            blocks = _limit(iter_corpus(self.source.source), self.source.limit)
        elif isinstance(self.source, ParquetInput):
            blocks = iter_parquet(self.source)
        else:
            blocks = iter(self.source.slices())
        ops = []
        try:
            for i, step in enumerate(self.steps):
                op = Tracked(
                    [(step.operator, {**step.kwargs, "resources": step.resources})],
                    self.stage,
                    counter,
                    i == 0,
                    i == len(self.steps) - 1,
                )
                ops.append(op)
                blocks = _apply(op, _rebatch(blocks, step.batch_size))
            yield from blocks
        finally:
            for op in ops:
                op.teardown()

    # sinks --------------------------------------------------------------------------------------------------------
    def iter_tables(self, executor: str, counter=None, batch_size: int | None = None) -> Iterator[pa.Table]:
        """Stream the output to the driver, a batch at a time (for folds into something small)."""
        if executor == "ray":
            ds = self.to_ray(counter)
            with _operator_errors(self.stage):
                # A loop, not `yield from`: that would also pass close() / throw() on to Ray's iterator.
                for batch in ds.iter_batches(batch_format="pyarrow", batch_size=batch_size, prefetch_batches=1):  # noqa: UP028
                    yield batch
        else:
            yield from self.iter_local(counter)

    def write_parquet(
        self,
        path: str | Path,
        executor: str,
        counter=None,
        partition_col: str | None = None,
        rows_per_file: int = ROWS_PER_FILE,
    ) -> None:
        """Write the output as Parquet parts under `path` (hive directories `<col>=<value>/` per partition).

        On a cluster every node must see `path` (a shared filesystem): the rows Ray's write tasks report are held
        against the rows visible here (`check_written`), so parts stranded on another node's disk are an error."""
        path = Path(path)
        if executor == "ray":
            ds = self.to_ray(counter)
            with _operator_errors(self.stage):
                written = _write_ray(ds, path, partition_col, rows_per_file, self.io_concurrency)
            if written is not None:
                check_written(path, written, self.stage)
            return
        _write_local(self.iter_local(counter), path, partition_col, rows_per_file)


def check_written(path: str | Path, expected: int, stage: str) -> int:
    """The rows in the Parquet parts under `path` — which must be every row the stage's writers wrote. Fewer means
    parts were written where this driver cannot see them (a node's local disk): an error, never a silent loss."""
    import pyarrow.parquet as pq

    found = sum(pq.ParquetFile(p).metadata.num_rows for p in Path(path).rglob("*.parquet"))
    if found != expected:
        raise OutputNotSharedError(
            f"stage {stage}: its writers wrote {expected:,} rows but {found:,} are in {path}: parts written on "
            "other nodes are not visible here. On a multi-node cluster put `out` (and corpus_signatures) on a "
            "filesystem every node mounts at the same path (NFS, a shared disk)"
        )
    return found


class OutputNotSharedError(QscopeError):
    """Rows written by actors on other nodes are missing from the driver's view of the output."""


def _write_ray(ds, path: Path, partition_col: str | None, rows_per_file: int, concurrency: int) -> int | None:
    """Ray's Parquet writer; returns the rows its write tasks reported written (None where Ray cannot say)."""
    if partition_col:
        # Coalesce small operator outputs into blocks of `rows_per_file` (streaming, no shuffle): the partitioned
        # writer writes one file per block and partition.
        ds = ds.map_batches(
            _identity, batch_size=rows_per_file, batch_format="pyarrow", num_cpus=READ_CPUS, concurrency=concurrency
        )
    sink = _counting_sink(
        str(path), [partition_col] if partition_col else None, None if partition_col else rows_per_file
    )
    if sink is None:  # a Ray without the datasink class: write, but nothing to cross-check against
        ds.write_parquet(
            str(path),
            partition_cols=[partition_col] if partition_col else None,
            ray_remote_args={"num_cpus": READ_CPUS},
            concurrency=concurrency,
        )
        return None
    ds.write_datasink(sink, ray_remote_args={"num_cpus": READ_CPUS}, concurrency=concurrency)
    return sink.rows_written


def _counting_sink(path: str, partition_cols, min_rows_per_file):
    """Ray's ParquetDatasink, remembering how many rows its write tasks wrote (`on_write_complete` runs on the
    driver): the number `check_written` holds against what the driver can see."""
    try:
        from ray.data._internal.datasource.parquet_datasink import ParquetDatasink
    except ImportError:
        return None

    class CountingParquetDatasink(ParquetDatasink):
        rows_written = None

        def on_write_complete(self, write_result):
            super().on_write_complete(write_result)
            self.rows_written = int(write_result.num_rows)

    return CountingParquetDatasink(path, partition_cols=partition_cols, min_rows_per_file=min_rows_per_file)


class OperatorError(QscopeError):
    """An operator failed on Ray: the error its code raised (not retried), or an actor that kept dying."""


_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$", re.M)


@contextmanager
def _operator_errors(stage: str):
    """Ray reports an operator's error wrapped in its own (`RayTaskError(UserCodeException)`, traceback as text):
    name the stage and the operator's own exception instead."""
    try:
        yield
    except QscopeError:
        raise
    except Exception as exc:
        from ray.exceptions import ActorDiedError, RayError

        if not isinstance(exc, RayError):
            raise
        text = str(exc)
        raised = [m for m in _RAISED.findall(text) if not m[0].startswith("ray.")]
        if raised:
            kind, message = raised[-1]
            raise OperatorError(f"stage {stage}: {kind.rsplit('.', 1)[-1]}: {message.strip()}") from exc
        if isinstance(exc, ActorDiedError):
            raise OperatorError(
                f"stage {stage}: an actor died more often than its retries allow (resources "
                f".retries); see the Ray worker logs for why (out of memory, a lost node)"
            ) from exc
        raise OperatorError(f"stage {stage}: {type(exc).__name__}: {text.splitlines()[0][:500]}") from exc


def _identity(batch: pa.Table) -> pa.Table:
    return batch


def _rebatch(blocks: Iterator[pa.Table], size: int) -> Iterator[pa.Table]:
    pending, n = [], 0
    for b in blocks:
        if b.num_rows == 0:
            continue
        pending.append(b)
        n += b.num_rows
        while n >= size:
            table = pa.concat_tables(pending, promote_options="permissive")
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, n = ([rest] if rest.num_rows else []), rest.num_rows
    if n:
        yield pa.concat_tables(pending, promote_options="permissive")


def _limit(blocks: Iterator[pa.Table], n: int | None) -> Iterator[pa.Table]:
    if n is None:
        yield from blocks
        return
    for b in blocks:
        if n <= 0:
            return
        yield b.slice(0, n)
        n -= b.num_rows


def _apply(op: Tracked, batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
    for b in batches:
        out = op(b)
        if out.num_rows:
            yield out


def iter_parquet(inp: ParquetInput, files: list[str] | None = None, batch_rows: int = 4096) -> Iterator[pa.Table]:
    """`inp`'s rows (or those of `files`, a subset of its parts), `batch_rows` at a time: hive partition columns
    added, the column selection and the `reject_reason` filter applied in the scan."""
    import pyarrow.dataset as pads

    files = inp.files() if files is None else files
    if not files:
        return
    data = pads.dataset(
        files, format="parquet", partitioning=_string_partitions(files, inp.base_dir), partition_base_dir=inp.base_dir
    )
    expr = inp.row_filter(data.schema.names)
    pending, rows = [], 0
    # Batches come one row group at a time (a few hundred rows in Ray-written parts): gather them into blocks of
    # about `batch_rows`, or every block downstream pays a task / actor call for a few hundred rows.
    # One block in flight: pyarrow's defaults pre-buffer whole column chunks and read ahead 16 batches / 4 files,
    # which a streaming reader does not need and which cost tens of MB per read worker (bench/README.md,
    # "Streaming pipelines at scale").
    scan = pads.ParquetFragmentScanOptions(pre_buffer=False)
    for batch in data.to_batches(
        columns=inp.columns,
        filter=expr,
        batch_size=batch_rows,
        batch_readahead=1,
        fragment_readahead=1,
        fragment_scan_options=scan,
    ):
        if batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
        if rows >= batch_rows:
            yield pa.Table.from_batches(pending)
            pending, rows = [], 0
    if rows:
        yield pa.Table.from_batches(pending)


def _string_partitions(files: list[str], base_dir: str):
    """Hive partition columns as strings: inferred types would differ between parts (a file key "2024" is an int)."""
    import pyarrow.dataset as pads

    names = []
    for f in files:
        rel = Path(f).relative_to(base_dir) if Path(f).is_relative_to(base_dir) else Path(f).name
        for part in Path(rel).parts[:-1]:
            name = part.split("=", 1)[0]
            if "=" in part and name not in names:
                names.append(name)
    return pads.partitioning(pa.schema([(n, pa.string()) for n in names]), flavor="hive")


def _write_local(tables: Iterator[pa.Table], path: Path, partition_col: str | None, rows_per_file: int) -> None:
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    counter = itertools.count()
    writer, key, rows = None, None, 0
    try:
        for table in tables:
            groups = _by_value(table, partition_col) if partition_col else [(None, table)]
            for value, part in groups:
                if writer is not None and (
                    value != key or rows >= rows_per_file or not part.schema.equals(writer.schema)
                ):
                    writer.close()
                    writer = None
                if writer is None:
                    folder = path / f"{partition_col}={value}" if partition_col else path
                    folder.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(folder / f"part-{next(counter):05d}.parquet", part.schema)
                    key, rows = value, 0
                writer.write_table(part)
                rows += part.num_rows
    finally:
        if writer is not None:
            writer.close()


def _by_value(table: pa.Table, column: str) -> list[tuple[str, pa.Table]]:
    values = table.column(column)
    rest = table.drop_columns([column])
    out = []
    for v in pc.unique(values).to_pylist():
        out.append((v, rest.filter(pc.equal(values, v))))
    return out
