"""Row selection without a model: a deterministic sample, the best rows of a batch, a column projection.

These make global answers out of a stream without collecting it: `SampleByHash` keeps the rows whose id hashes
below a threshold (the union over batches is a uniform, order-independent sample); `TopRows` keeps each batch's
best k (the driver merges k per batch into the global k); `Project` shapes the rows a sink writes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qscope.errors import InputError
from qscope.operators.base import Operator, Resources, require_columns, set_column

_SCALE = float(1 << 64)


def id_hash(ids: Sequence[str]) -> np.ndarray:
    """64-bit BLAKE2b of each id (uint64): a row's fixed place in every sample, whatever the batching."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little") for i in ids], np.uint64
    )


class SampleByHash(Operator):
    """Keep rows whose `id` hash is below `fraction` of the hash range; adds `sample_key` (the hash).

    With fraction = 1.3 k / N over N rows, about 1.3 k rows pass; the k with the smallest `sample_key` are a
    uniform random sample of the N that is the same on every run and every partitioning.
    """

    name: ClassVar[str] = "sample_by_hash"

    def __init__(self, fraction: float, id_column: str = "id", resources: Resources | dict | None = None):
        super().__init__(resources)
        if not 0 < fraction:
            raise InputError(f"SampleByHash: fraction must be > 0, got {fraction}")
        self.fraction, self.id_column = float(fraction), id_column

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, self.id_column, op=self.name)
        h = id_hash(table.column(self.id_column).to_pylist())
        keep = h.astype(np.float64) < self.fraction * _SCALE if self.fraction < 1 else np.ones(len(h), bool)
        return set_column(table, "sample_key", pa.array(h, pa.uint64())).filter(pa.array(keep))


def smallest_keys(tables: list[pa.Table], k: int) -> pa.Table:
    """The k rows with the smallest `sample_key` (driver side of SampleByHash)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pa.table({})
    t = pa.concat_tables(tables, promote_options="permissive")
    return t.sort_by([("sample_key", "ascending")]).slice(0, k).drop_columns(["sample_key"])


class TopRows(Operator):
    """Keep the `k` rows of each batch with the highest `column` (ties: smaller id first), at least `min_value`."""

    name: ClassVar[str] = "top_rows"

    def __init__(self, column: str, k: int, min_value: float | None = None, resources: Resources | dict | None = None):
        super().__init__(resources)
        self.column, self.k, self.min_value = column, int(k), min_value

    def process(self, table: pa.Table) -> pa.Table:
        return best_rows(table, self.column, self.k, self.min_value)


def best_rows(table: pa.Table, column: str, k: int, min_value: float | None = None) -> pa.Table:
    require_columns(table, column, op="top_rows")
    if min_value is not None:
        table = table.filter(pc.fill_null(pc.greater_equal(table.column(column), min_value), False))
    keys = [(column, "descending")] + ([("id", "ascending")] if "id" in table.column_names else [])
    return table.sort_by(keys).slice(0, k)


class Project(Operator):
    """Select (and order) columns, dropping those absent from the batch, and stamp `qscope.*` schema metadata."""

    name: ClassVar[str] = "project"

    def __init__(self, columns: Sequence[str], metadata: dict | None = None, resources: Resources | dict | None = None):
        super().__init__(resources)
        self.columns = list(columns)
        self.metadata = {f"qscope.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}

    def process(self, table: pa.Table) -> pa.Table:
        table = table.select([c for c in self.columns if c in table.column_names])
        if self.metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **self.metadata})
        return table
