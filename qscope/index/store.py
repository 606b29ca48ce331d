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
        fids = r.feature_ids
        if _has_repeats(r):  # canonicalise: merge (sum) repeated ids, rows then sorted by id
            key, inv = np.unique(rows * self.d_sae + fids, return_inverse=True)
            w = np.bincount(inv, weights=w).astype(np.float32)
            rows, fids = key // self.d_sae, key % self.d_sae
        keep = w > 0
        rows, fids, w = rows[keep], fids[keep], w[keep]
        lens = np.bincount(rows, minlength=r.n_rows)
        rmax = np.zeros(r.n_rows, np.float32)
        nonempty = lens > 0
        if w.size:  # rows are grouped, so a reduceat over each non-empty row's start gives its maximum
            rmax[nonempty] = np.maximum.reduceat(w, np.concatenate([[0], np.cumsum(lens)[:-1]])[nonempty])
        if self.value_bits == 8:
            scale = rmax / 255.0
            code = np.rint(w / np.where(scale > 0, scale, 1.0)[rows]).clip(1, 255).astype(np.uint8)
        else:
            scale = np.ones(r.n_rows, np.float32)
            code = w.astype(_VALUE_DTYPES[self.value_bits])
        return lens, fids.astype(self.id_dtype), code, scale.astype(np.float32)

    def append(self, r: Ragged) -> np.ndarray:
        """Store new rows; returns their (de-duplicated) latent ids, for document-frequency counts."""
        lens, fid, code, scale = self.encode(r)
        self.indptr = np.concatenate([self.indptr, self.indptr[-1] + np.cumsum(lens)])
        self.fid = np.concatenate([self.fid, fid])
        self.code = np.concatenate([self.code, code])
        self.scale = np.concatenate([self.scale, scale])
        return fid

    def weights(self) -> np.ndarray:
        """Per-entry float32 weights (transformed values, before IDF)."""
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        return self.code.astype(np.float32) * self.scale[rows]

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


def _has_repeats(r: Ragged) -> bool:
    """Does any row name a latent twice? (Row-wise sort of a padded [n, max_len] matrix: cheaper than a global
    sort of all entries, and signatures from `pool_signature` never repeat, so the merge is usually skipped.)"""
    lens = np.diff(r.indptr)
    if r.n_rows == 0 or lens.max() < 2:
        return False
    width = int(lens.max())
    pad = np.full((r.n_rows, width), -1, np.int64)
    pad[np.arange(width)[None, :] < lens[:, None]] = r.feature_ids
    pad = np.sort(pad, axis=1)
    return bool(((pad[:, 1:] == pad[:, :-1]) & (pad[:, 1:] >= 0)).any())
