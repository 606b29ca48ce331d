"""BuildSignatureIndex: signature rows aggregated into a `qscope.index.SignatureIndex` (kNN, FAISS)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from qscope.deprecation import moved_names
from qscope.errors import InputError
from qscope.operators.base import Operator, Resources, as_table, require_columns
from qscope.signatures import SignatureMeta


class BuildSignatureIndex(Operator):
    """Aggregate signature rows into a `qscope.index.SignatureIndex` (IDF-weighted cosine; FAISS above a size).

    Building an index is a reduction, so it runs where the rows are collected (the driver), batch by batch:

        from qscope.operators import BuildSignatureIndex
        builder = BuildSignatureIndex(meta=encoder.signature_meta())
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=1024):   # or builder(table) without Ray
            builder(batch)
        builder.save("corpus.index")            # or builder.index for search / knn_classify / dedup

    The meta (model, SAE id, layer, pooling) is stored with the index; loading it later with another SAE's
    signatures raises `InputError` ("... were built with sae=...").
    """

    name: ClassVar[str] = "build_signature_index"

    def __init__(self, meta: SignatureMeta | dict, resources: Resources | dict | None = None, **index_kw: Any):
        super().__init__(resources)
        self.meta = meta if isinstance(meta, SignatureMeta) else SignatureMeta(**meta)
        from qscope.index import SignatureIndex

        self.index = SignatureIndex(self.meta, **index_kw)

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, "id", "feature_ids", "feature_values", op=self.name)
        self.index.add(table.column("id").to_pylist(), table.column("feature_ids"), table.column("feature_values"))
        return table

    def add_all(self, batches: Iterable[Any]) -> BuildSignatureIndex:
        for b in batches:
            self(as_table(b))
        return self

    @classmethod
    def from_dataset(cls, ds, meta: SignatureMeta | dict, batch_size: int = 4096, **index_kw):
        """Build from a Ray Dataset of signature rows (iterated on the driver)."""
        return cls(meta, **index_kw).add_all(ds.iter_batches(batch_format="pyarrow", batch_size=batch_size))

    def save(self, path: str | Path) -> Path:
        if len(self.index) == 0:
            raise InputError("refusing to save an empty signature index")
        return self.index.save(path)


# Old homes of names that moved: they warn and keep working.
__getattr__ = moved_names(
    __name__, {"SeedSignatures": "qscope.seed_model", "load_index": "qscope.index:SignatureIndex.load"}
)
