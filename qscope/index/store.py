"""Compact storage of transformed signature weights: uint16 latent ids + 8-bit codes per entry.

A top-64 signature costs 64 × (2 + 1) bytes + an 8-byte row pointer + a 4-byte row scale = 204 bytes. The codes are
each row's weights divided by the row maximum, in [0, 255]; the row's cosine with anything is thereby perturbed by
<~0.2 % of its largest weight. `value_bits=16/32` keeps float16/float32 weights instead (exact-path tests use 32).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qscope.errors import InputError
from qscope.index.ragged import Ragged
from qscope.index.vectors import apply_transform

_VALUE_DTYPES = {8: np.uint8, 16: np.float16, 32: np.float32}


@dataclass
class CompactStore:
    d_sae: int
    transform: str = "raw"
    value_bits: int = 8
    indptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    fid: np.ndarray = None  # type: ignore[assignment]
    code: np.ndarray = None  # type: ignore[assignment]
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self):
        if self.value_bits not in _VALUE_DTYPES:
            raise InputError(f"value_bits must be one of {sorted(_VALUE_DTYPES)}, got {self.value_bits}")
        if self.fid is None:
            self.fid = np.zeros(0, self.id_dtype)
        if self.code is None:
            self.code = np.zeros(0, _VALUE_DTYPES[self.value_bits])

    @property
    def id_dtype(self):
        return np.uint16 if self.d_sae <= 1 << 16 else np.int32

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def encode(self, r: Ragged) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row lengths, fid, code, scale) for new rows; duplicate ids inside a row are merged (summed)."""
        w = apply_transform(r.values, self.transform)
        rows = np.repeat(np.arange(r.n_rows), np.diff(r.indptr))
        key = rows * self.d_sae + r.feature_ids
        if key.size and (np.diff(key) <= 0).any():  # unsorted or duplicated: canonicalise (sorted by id)
            key, inv = np.unique(key, return_inverse=True)
            w = np.bincount(inv, weights=w).astype(np.float32)
            rows, fids = key // self.d_sae, key % self.d_sae
        else:
            fids = r.feature_ids
        keep = w > 0
        rows, fids, w = rows[keep], fids[keep], w[keep]
        lens = np.bincount(rows, minlength=r.n_rows)
        rmax = np.zeros(r.n_rows, np.float32)
        np.maximum.at(rmax, rows, w)
        if self.value_bits == 8:
            scale = rmax / 255.0
            code = np.rint(w / np.where(scale > 0, scale, 1.0)[rows]).clip(1, 255).astype(np.uint8)
        else:
            scale = np.ones(r.n_rows, np.float32)
            code = w.astype(_VALUE_DTYPES[self.value_bits])
        return lens, fids.astype(self.id_dtype), code, scale.astype(np.float32)

    def append(self, r: Ragged) -> None:
        lens, fid, code, scale = self.encode(r)
        self.indptr = np.concatenate([self.indptr, self.indptr[-1] + np.cumsum(lens)])
        self.fid = np.concatenate([self.fid, fid])
        self.code = np.concatenate([self.code, code])
        self.scale = np.concatenate([self.scale, scale])

    def weights(self) -> np.ndarray:
        """Per-entry float32 weights (transformed values, before IDF)."""
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        return self.code.astype(np.float32) * self.scale[rows]

    def permute(self, order: np.ndarray) -> None:
        """Reorder rows (so that each IVF list is one contiguous block)."""
        lens = np.diff(self.indptr)[order]
        starts = self.indptr[:-1][order]
        src = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
        self.fid, self.code = self.fid[src], self.code[src]
        self.scale = self.scale[order]
        self.indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)

    def ragged(self, rows: np.ndarray | None = None) -> Ragged:
        """Stored weights back as a Ragged batch (all rows, or `rows`)."""
        full = Ragged(self.indptr, self.fid.astype(np.int64), self.weights())
        if rows is None:
            return full
        rows = np.asarray(rows, np.int64)
        lens = np.diff(self.indptr)[rows]
        src = (np.repeat(self.indptr[:-1][rows] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
               + np.arange(lens.sum()))
        return Ragged(np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), full.feature_ids[src], full.values[src])

    def nbytes(self) -> int:
        return self.indptr.nbytes + self.fid.nbytes + self.code.nbytes + self.scale.nbytes
