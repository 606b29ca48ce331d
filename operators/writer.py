"""Atomic Parquet output: per-batch shards with provenance columns, a final merged file, a completion marker.

A killed actor can never corrupt the output: every shard is written to a temporary sibling and renamed into place
(`qscope.paths.atomic_path`), the merged file likewise, and `_SUCCESS` (JSON: rows, files, time) is written last.
Readers should trust a directory only when `_SUCCESS` exists; a rerun overwrites shards with the same name
(names are derived from the rows' ids, so a retried batch replaces, never duplicates, its shard).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from qscope.deprecation import moved_names
from qscope.errors import InputError
from qscope.operators.base import Operator, Resources
from qscope.paths import atomic_path
from qscope.provenance import Provenance, add_provenance

SUCCESS = "_SUCCESS"
SHARD_DIR = "shards"


class WriteParquetShards(Operator):
    """Write each batch to `<out_dir>/shards/part-<hash of ids>.parquet` atomically, with provenance columns.

    Returns a one-row table per batch (`shard`, `rows`) so a Ray pipeline can count what was written; then call
    `finalize_shards(out_dir, "samples.parquet")` on the driver to merge and mark completion.

        from qscope.operators import WriteParquetShards
        from qscope.operators.writer import finalize_shards
        ds.map_batches(**WriteParquetShards.map_batches_kwargs(
            {"out_dir": "out", "provenance": prov.to_dict()}, {"num_cpus": 0.25})).materialize()
        finalize_shards("out", "samples.parquet")
    """

    name: ClassVar[str] = "write_parquet_shards"

    def __init__(
        self,
        out_dir: str,
        provenance: Provenance | dict | None = None,
        prefix: str = "part",
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        self.out_dir = Path(out_dir)
        self.provenance = provenance
        self.prefix = prefix

    def process(self, table: pa.Table) -> pa.Table:
        if table.num_rows == 0:
            return pa.table({"shard": pa.array([], pa.string()), "rows": pa.array([], pa.int64())})
        if self.provenance is not None:
            table = add_provenance(table, self.provenance)
        key = ",".join(map(str, table.column("id").to_pylist())) if "id" in table.column_names else str(time.time_ns())
        name = f"{self.prefix}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.parquet"
        path = self.out_dir / SHARD_DIR / name
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return pa.table({"shard": [str(path)], "rows": pa.array([table.num_rows], pa.int64())})


def write_table_atomic(table: pa.Table, path: str | Path, metadata: dict | None = None) -> Path:
    """Write one Parquet file atomically; `metadata` (str → JSON-able) lands in the schema as `qscope.*` keys."""
    path = Path(path)
    if metadata:
        md = dict(table.schema.metadata or {})
        md.update(
            {f"qscope.{k}".encode(): (v if isinstance(v, str) else json.dumps(v)).encode() for k, v in metadata.items()}
        )
        table = table.replace_schema_metadata(md)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def finalize_shards(
    out_dir: str | Path,
    final_name: str = "samples.parquet",
    metadata: dict | None = None,
    sort_by: str | None = None,
    descending: bool = False,
    transform=None,
) -> Path:
    """Merge `<out_dir>/shards/*.parquet` into `<out_dir>/<final_name>` atomically, then write `_SUCCESS`."""
    out_dir = Path(out_dir)
    shards = sorted((out_dir / SHARD_DIR).glob("*.parquet"))
    if not shards:
        raise InputError(f"{out_dir}: no shards to merge")
    table = pa.concat_tables([pq.read_table(s) for s in shards], promote_options="permissive")
    if sort_by and sort_by in table.column_names:
        keys = [(sort_by, "descending" if descending else "ascending")]
        if "id" in table.column_names:
            keys.append(("id", "ascending"))
        table = table.sort_by(keys)
    if transform is not None:
        table = transform(table)
    final = write_table_atomic(table, out_dir / final_name, metadata)
    mark_complete(out_dir, {"rows": table.num_rows, "files": [final_name], "shards": len(shards)})
    return final


def mark_complete(out_dir: str | Path, info: dict) -> Path:
    """Write `<out_dir>/_SUCCESS` atomically (last step of a run)."""
    marker = Path(out_dir) / SUCCESS
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps({**info, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    return marker


def is_complete(out_dir: str | Path) -> bool:
    return (Path(out_dir) / SUCCESS).exists()


# Old homes of names that moved: they warn and keep working.
__getattr__ = moved_names(__name__, {"PROVENANCE_TYPES": "qscope.provenance"})
