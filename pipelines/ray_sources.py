"""Ray Data reads for `flow.Flow` inputs: corpus files through a `FileBasedDatasource` (one read task streams
its files block by block, any pyarrow filesystem), `hf:` hub datasets shard by shard, Parquet through
`ray.data.read_parquet`, small tables through `from_arrow`. Imported only when a flow runs on Ray."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, FileBasedDatasource, ReadTask

from qscope.pipelines.sources import (
    ROW_SCHEMA,
    CorpusSource,
    RowBuilder,
    iter_file_rows,
    iter_hub,
    load_hub_dataset,
    open_corpus_file,
)


def read(inp, read_cpus: float, concurrency: int | None = None):
    import ray

    from qscope.pipelines.flow import CorpusInput, ParquetInput, TableInput

    if isinstance(inp, CorpusInput):
        src = inp.source
        if src.hub is not None:
            return ray.data.read_datasource(HubDatasource(src), num_cpus=read_cpus, concurrency=concurrency)
        return _read_per_file(CorpusDatasource(src), len(src.files), read_cpus, concurrency)
    if isinstance(inp, ParquetInput):
        if not inp.files():
            return ray.data.from_arrow(pa.table({c: pa.array([], pa.string()) for c in (inp.columns or ["id"])}))
        return _read_per_file(PartsDatasource(inp), len(inp.files()), read_cpus, concurrency)
    if isinstance(inp, TableInput):
        return ray.data.from_arrow(inp.slices())
    raise TypeError(f"unknown flow input {type(inp).__name__}")


def _read_per_file(datasource, n_files: int, read_cpus: float, concurrency: int | None):
    """One read task per file (grouped past 200). Left to choose, Ray aims at ~200 blocks and, with fewer files,
    splits every block a read task emits into that many slivers (a one-file corpus became blocks of a few rows,
    glued back together downstream at a cost per sliver). Blocks stay small without it: `runtime.BLOCK_BYTES`.
    Concurrency is capped at the task count: Ray warns on the user's stderr when a read cannot reach it."""
    import ray

    tasks = max(1, min(n_files, 200))
    if concurrency is not None:
        concurrency = max(1, min(concurrency, tasks))
    return ray.data.read_datasource(datasource, num_cpus=read_cpus, concurrency=concurrency, override_num_blocks=tasks)


class PartsDatasource(Datasource):
    """Parquet parts (a signature store, staged results) → blocks, one read task per part, streamed in batches with
    the columns and the `reject_reason` filter applied in the scan.

    Ray's own `read_parquet` puts several parts in one read task whose worker kept every part it had read (memory
    growing with the corpus: bench/README.md, "Streaming pipelines at scale"); a task per part holds one batch at
    a time."""

    def __init__(self, inp):
        self.inp = inp
        self.files = inp.files()

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, **_) -> list[ReadTask]:
        from qscope.pipelines.flow import iter_parquet

        tasks = []
        for path in self.files:

            def read_fn(path=path):
                yield from iter_parquet(self.inp, [path])

            tasks.append(
                ReadTask(read_fn, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=[path]))
            )
        return tasks

    def get_name(self) -> str:
        return "ReadParts"


class CorpusDatasource(FileBasedDatasource):
    """Corpus files → `ROW_SCHEMA` blocks (bad rows kept with their reason, never an exception)."""

    def __init__(self, source: CorpusSource):
        super().__init__([f.path for f in source.files], filesystem=source.filesystem)
        self.by_path = {f.path: f for f in source.files}
        self.text_column, self.id_column, self.max_chars = source.text_column, source.id_column, source.max_chars
        self._open_errors: dict[str, str] = {}

    def _open_input_source(self, filesystem, path: str, **open_args):
        file = self.by_path[_strip(path, self.by_path)]
        try:
            return open_corpus_file(filesystem, file)
        except OSError as exc:  # reported as one rejected row by _read_stream
            self._open_errors[path] = f"unreadable file: {exc}"
            return pa.BufferReader(b"")

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        file = self.by_path[_strip(path, self.by_path)]
        if path in self._open_errors:
            rows = RowBuilder(file, self.text_column, self.id_column, self.max_chars)
            rows.reject(-1, self._open_errors.pop(path), f"{file.key}:unreadable")
            yield rows.flush()
            return
        yield from iter_file_rows(f, file, self.text_column, self.id_column, self.max_chars)

    def get_name(self) -> str:
        return "ReadCorpus"


def _strip(path: str, known: dict) -> str:
    # Ray may hand paths back without the leading "/" that pyarrow's local filesystem listed.
    if path in known:
        return path
    for p in (f"/{path}", path.lstrip("/")):
        if p in known:
            return p
    raise KeyError(path)


class HubDatasource(Datasource):
    """`hf:NAME[:CONFIG][@SPLIT]`: one read task per shard of the streaming dataset."""

    def __init__(self, source: CorpusSource):
        self.source = source
        self.n_shards = max(1, int(getattr(load_hub_dataset(source), "n_shards", 1) or 1))

    def estimate_inmemory_data_size(self):
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        n = max(1, min(parallelism, self.n_shards))
        tasks = []
        for i in range(n):

            def read_fn(i=i, n=n):
                yield from iter_hub(self.source, shard=(i, n))

            tasks.append(
                ReadTask(
                    read_fn,
                    BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None),
                    schema=ROW_SCHEMA,
                )
            )
        return tasks

    def get_name(self) -> str:
        return "ReadHuggingFace"
