"""Compact storage of transformed signature weights: delta-coded latent ids + 8-bit value codes per entry.

Each row's latents are kept sorted by id and stored as gaps from the previous id (the first as id + 1), in uint8
(or uint16 where the rows are too sparse for that to pay: SAEs much wider than their signatures are long). A gap
too large for the width is split off into escape entries — delta 0 = "advance 2^w - 1, no latent here", stored
with value code 0 so a gather that skips nothing still adds nothing. Decoding is a segment cumsum (`segment_ids`).
Values are each row's weights over its maximum, as codes 1..255; the row's cosine with anything moves by <~0.2 % of
its largest weight. `value_bits=16/32` keeps float16/float32 weights instead (exact-path tests use 32).

Size per row: (latents + escapes) entries × 2 B (uint8 gap + code) + 4 (uint32 row pointer; int64 past 2^32
entries) + 4 (float32 row scale). For top-64 signatures of a d_sae 8192 SAE that is well under uint16 ids + codes
(bytes measured: bench/README.md, "Signature index").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qscope.errors import InputError
from qscope.index.ragged import Ragged
from qscope.index.vectors import apply_transform

_VALUE_DTYPES = {8: np.uint8, 16: np.float16, 32: np.float32}
_DELTA_DTYPES = {8: np.uint8, 16: np.uint16}


@dataclass
class CompactStore:
    d_sae: int
    transform: str = "raw"
    value_bits: int = 8
    delta_bits: int | None = None
    """8 or 16; None = pick on the first non-empty append, whichever stores that batch in fewer bytes."""
    indptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.uint32))  # over stored entries (escapes too)
    delta: np.ndarray = None  # type: ignore[assignment]
    code: np.ndarray = None  # type: ignore[assignment]
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self):
        if self.value_bits not in _VALUE_DTYPES:
            raise InputError(f"value_bits must be one of {sorted(_VALUE_DTYPES)}, got {self.value_bits}")
        if self.delta_bits not in (None, *_DELTA_DTYPES):
            raise InputError(f"delta_bits must be 8, 16 or None, got {self.delta_bits}")
        if self.delta is None:
            self.delta = np.zeros(0, _DELTA_DTYPES[self.delta_bits or 8])
        if self.code is None:
            self.code = np.zeros(0, _VALUE_DTYPES[self.value_bits])

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def encode(self, r: Ragged) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(stored row ends, delta, code, scale, latent ids) for new rows; repeated ids in a row are summed."""
        lens = np.diff(r.indptr)
        fids, w = _sort_rows(r.indptr, r.feature_ids, apply_transform(r.values, self.transform))
        gap = _gaps(fids, lens)
        if (gap == 0).any():  # a repeated id (rows are sorted): merge (sum) — signatures from pool_signature never do
            rows = np.repeat(np.arange(r.n_rows), lens)
            key, inv = np.unique(rows * self.d_sae + fids, return_inverse=True)
            w, fids = np.bincount(inv, weights=w).astype(np.float32), key % self.d_sae
            lens = np.bincount(key // self.d_sae, minlength=r.n_rows)
            gap = _gaps(fids, lens)
        if not (w > 0).all():  # zero weights are not stored
            rows = np.repeat(np.arange(r.n_rows), lens)[w > 0]
            fids, w, lens = fids[w > 0], w[w > 0], np.bincount(rows, minlength=r.n_rows)
            gap = _gaps(fids, lens)
        ends = np.cumsum(lens)
        nonempty = lens > 0
        rmax = np.zeros(r.n_rows, np.float32)
        if w.size:  # rows are grouped, so a reduceat over each non-empty row's start gives its maximum
            rmax[nonempty] = np.maximum.reduceat(w, (ends - lens)[nonempty])
        if self.value_bits == 8:
            scale = rmax / np.float32(255)
            inv = np.divide(1, scale, out=np.zeros_like(scale), where=scale > 0)
            code = np.rint(w * np.repeat(inv, lens)).clip(1, 255).astype(np.uint8)
        else:
            scale = np.ones(r.n_rows, np.float32)
            code = w.astype(_VALUE_DTYPES[self.value_bits])
        if self.delta_bits is None and len(gap):  # bytes per entry × (entries + escapes), for each width
            cost = {b: (b // 8 + self.code.itemsize) * (len(gap) + ((gap - 1) // (2**b - 1)).sum()) for b in (8, 16)}
            self.delta_bits = min(cost, key=cost.get)
            self.delta = np.zeros(0, _DELTA_DTYPES[self.delta_bits])
        step = int(np.iinfo(self.delta.dtype).max)
        esc = np.zeros(len(gap), np.int64)
        big = gap > step
        esc[big] = (gap[big] - 1) // step
        at = np.arange(len(gap)) + np.cumsum(esc)  # where each real entry lands after its escapes
        delta = np.zeros(len(gap) + int(esc.sum()), self.delta.dtype)
        out_code = np.zeros(len(delta), code.dtype)
        delta[at], out_code[at] = gap - step * esc, code
        stored_ends = np.concatenate([[0], at + 1])[ends]  # a row ends after its last real entry
        return stored_ends, delta, out_code, scale.astype(np.float32), fids

    def append(self, r: Ragged) -> np.ndarray:
        """Store new rows; returns their (de-duplicated) latent ids, for document-frequency counts."""
        ends, delta, code, scale, fids = self.encode(r)
        indptr = int(self.indptr[-1]) + ends
        dtype = np.uint32 if (indptr[-1] if len(indptr) else 0) < 2**32 else np.int64
        self.indptr = np.concatenate([self.indptr.astype(dtype, copy=False), indptr.astype(dtype)])
        self.delta = np.concatenate([self.delta, delta])
        self.code = np.concatenate([self.code, code])
        self.scale = np.concatenate([self.scale, scale])
        return fids

    def _entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stored lengths, delta, code) of `rows`, concatenated."""
        starts = self.indptr[:-1][rows].astype(np.int64)
        lens = self.indptr[1:][rows].astype(np.int64) - starts
        src = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(lens.sum())
        return lens, self.delta[src], self.code[src]

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stored lengths, latent ids, value codes) of `rows`, concatenated, for the re-rank. Escape entries stay
        in: code 0, and an id below the row's next latent, so they add nothing to a weighted sum."""
        lens, delta, code = self._entries(np.asarray(rows, np.int64))
        return lens, segment_ids(delta, lens), code

    def ragged(self, rows: np.ndarray | None = None) -> Ragged:
        """Stored float32 weights (transformed values, before IDF) as a Ragged batch, all rows or `rows`."""
        if rows is None:
            rows = np.arange(len(self))
            lens, delta, code = np.diff(self.indptr.astype(np.int64)), self.delta, self.code
        else:
            rows = np.asarray(rows, np.int64)
            lens, delta, code = self._entries(rows)
        real = delta != 0
        n_real = np.zeros(len(rows), np.int64)
        if len(real):  # entries less escapes, per row
            n_real[lens > 0] = np.add.reduceat(real.view(np.uint8), (np.cumsum(lens) - lens)[lens > 0], dtype=np.int64)
        vals = code[real].astype(np.float32) * np.repeat(self.scale[rows], n_real)
        return Ragged(np.concatenate([[0], np.cumsum(n_real)]), segment_ids(delta, lens)[real].astype(np.int64), vals)

    def nbytes(self) -> int:
        return self.indptr.nbytes + self.delta.nbytes + self.code.nbytes + self.scale.nbytes


def segment_ids(delta: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Latent ids (uint32) of whole stored rows laid end to end (`lens` entries each): a cumsum of the gaps, less
    each row's start. The cumsum wraps modulo 2^32, the differences do not care (every id is < 2^32)."""
    cs = delta.astype(np.uint32)
    cs[delta == 0] = np.iinfo(delta.dtype).max
    np.cumsum(cs, out=cs)
    first = (np.cumsum(lens) - lens)[lens > 0]
    base = np.zeros(len(lens), np.uint32)
    base[lens > 0] = np.where(first > 0, cs[np.maximum(first - 1, 0)], 0)
    cs -= np.repeat(base, lens)
    cs -= np.uint32(1)
    return cs


def _gaps(fids: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Id minus the previous id in its row (id-sorted rows); a row's first entry gets id + 1, so every gap is >= 1
    and 0 is free to mean "escape"."""
    prev = np.empty(len(fids), np.int64)
    prev[1:] = fids[:-1]
    prev[(np.cumsum(lens) - lens)[lens > 0]] = -1
    return fids - prev


def _sort_rows(indptr: np.ndarray, fids: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's entries by latent id. Rows are padded into an [n, max_len] matrix of `id × width + position` keys
    and sorted along axis 1: many short sorts, cheaper than one global sort of every entry."""
    lens = np.diff(indptr)
    if fids.size == 0:
        return fids.astype(np.int64), w
    width = int(lens.max())
    if len(lens) * width > 4 * len(fids) + 4096:  # a few long rows among short ones: padding would not pay
        rows = np.repeat(np.arange(len(lens)), lens)
        order = np.argsort(rows * (int(fids.max()) + 1) + fids, kind="stable")
        return fids[order].astype(np.int64), w[order]
    dtype = np.int32 if (int(fids.max()) + 1) * width < 2**31 else np.int64  # int32 sorts faster
    pad = np.full((len(lens), width), np.iinfo(dtype).max, dtype)
    mask = np.arange(width)[None, :] < lens[:, None]
    pad[mask] = fids.astype(dtype) * width + (np.arange(len(fids)) - np.repeat(indptr[:-1], lens)).astype(dtype)
    pad.sort(axis=1)
    key = pad[mask]
    order = np.repeat(indptr[:-1], lens) + key % width
    return (key // width).astype(np.int64), w[order]
