"""Sparse signatures as ragged arrays (indptr, feature_ids, values), from whatever the caller holds.

Accepted inputs for a batch of signatures: a list of (ids, values) array pairs, two lists of arrays, pyarrow
(Chunked)ListArrays (the Parquet columns, read without a Python loop), or polars Series of lists.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from qscope.errors import InputError


class Ragged(NamedTuple):
    """Row i holds `feature_ids[indptr[i]:indptr[i+1]]` with `values[...]` (float32, > 0)."""

    indptr: np.ndarray  # int64 [n + 1]
    feature_ids: np.ndarray  # int64 [nnz]
    values: np.ndarray  # float32 [nnz]

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.indptr[i], self.indptr[i + 1]
        return self.feature_ids[s:e], self.values[s:e]


def _from_arrow(col) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if col.null_count:
        raise InputError("signature column has null rows; every row needs a (possibly empty) list")
    offsets = np.asarray(col.offsets, dtype=np.int64)
    flat = np.asarray(col.values.to_numpy(zero_copy_only=False))
    return offsets - offsets[0], flat[offsets[0] : offsets[-1]]


def _is_arrow(x: Any) -> bool:
    return type(x).__module__.startswith("pyarrow")


def as_ragged(feature_ids: Any, feature_values: Any = None, d_sae: int | None = None) -> Ragged:
    """Normalise a batch of sparse signatures; check lengths, ranges and values. Duplicated ids are summed."""
    if isinstance(feature_ids, Ragged):
        if feature_values is not None:
            raise InputError("pass a Ragged batch alone (its values are inside it)")
        indptr, fids, vals = feature_ids
        return _checked(indptr, fids, vals, d_sae)
    if feature_values is None:  # a list of (ids, values) pairs
        pairs = list(feature_ids)
        feature_ids = [p[0] for p in pairs]
        feature_values = [p[1] for p in pairs]
    if type(feature_ids).__module__.startswith("polars"):
        feature_ids, feature_values = feature_ids.to_arrow(), feature_values.to_arrow()
    if _is_arrow(feature_ids) != _is_arrow(feature_values):
        raise InputError("feature_ids and feature_values must be the same kind of container")
    if _is_arrow(feature_ids):
        ptr_i, flat_i = _from_arrow(feature_ids)
        ptr_v, flat_v = _from_arrow(feature_values)
        if len(ptr_i) != len(ptr_v) or not np.array_equal(ptr_i, ptr_v):
            raise InputError("feature_ids and feature_values rows have different lengths")
        indptr, fids, vals = ptr_i, flat_i.astype(np.int64), flat_v.astype(np.float32)
    else:
        ids_list, vals_list = list(feature_ids), list(feature_values)
        if len(ids_list) != len(vals_list):
            raise InputError(f"{len(ids_list)} feature_ids rows but {len(vals_list)} feature_values rows")
        lens = np.zeros(len(ids_list) + 1, np.int64)
        for i, (a, b) in enumerate(zip(ids_list, vals_list)):
            na, nb = np.size(a), np.size(b)
            if na != nb:
                raise InputError(f"row {i}: {na} feature ids but {nb} values")
            lens[i + 1] = na
        indptr = np.cumsum(lens)
        fids = (
            np.concatenate([np.asarray(a, np.int64).ravel() for a in ids_list])
            if ids_list and indptr[-1]
            else np.zeros(0, np.int64)
        )
        vals = (
            np.concatenate([np.asarray(b, np.float32).ravel() for b in vals_list])
            if vals_list and indptr[-1]
            else np.zeros(0, np.float32)
        )
    return _checked(indptr, fids, vals, d_sae)


def _checked(indptr: np.ndarray, fids: np.ndarray, vals: np.ndarray, d_sae: int | None) -> Ragged:
    if fids.size:
        lo, hi = int(fids.min()), int(fids.max())
        if lo < 0 or (d_sae is not None and hi >= d_sae):
            raise InputError(f"feature ids must lie in [0, {d_sae}); got range [{lo}, {hi}]")
        if not np.isfinite(vals).all():
            raise InputError("feature values contain NaN or inf")
        if (vals < 0).any():
            raise InputError("feature values must be >= 0 (pooled SAE activations)")
    return Ragged(indptr.astype(np.int64), fids, vals)


def to_csr(r: Ragged, d_sae: int):
    """scipy CSR [n, d_sae] float32 (duplicate ids within a row are summed)."""
    import scipy.sparse as sp

    m = sp.csr_matrix((r.values.astype(np.float32), r.feature_ids.astype(np.int32), r.indptr), shape=(r.n_rows, d_sae))
    m.sum_duplicates()
    return m
