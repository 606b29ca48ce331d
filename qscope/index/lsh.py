"""Approximate candidates for large indexes: SimHash bit codes of the weighted vectors, scanned by FAISS.

Bit b of a signature's code is the sign of its IDF-weighted vector's dot product with a fixed Gaussian direction
(random-hyperplane LSH, Charikar 2002): the Hamming distance between two codes estimates the angle between the two
vectors, whatever the data's structure. FAISS scans the codes (SIMD popcount; `IndexBinaryFlat`) for the
`rerank` nearest, and those are re-scored exactly from the compact store, so the final top-k carries exact
cosines. The default, 768 bits (96 B) + the top 200 re-ranked, is the smallest setting that met the goal of
recall@10 ≥ 0.95 vs exact cosine at ≤ 256 B per signature (compact store included) on bench/index.py's signatures;
1024-bit codes recall more for 32 B more. k-means partitions (IVF, in hashed or latent space) recalled far less at a
similar cost. Numbers: bench/README.md, "Signature index".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from qscope.errors import InputError
from qscope.index.store import CompactStore


class SimHashCodes:
    def __init__(self, d_sae: int, bits: int = 768, seed: int = 0):
        if bits <= 0 or bits % 64:
            raise InputError(f"code bits must be a positive multiple of 64, got {bits}")
        self.d_sae, self.bits, self.seed = d_sae, int(bits), int(seed)
        self.planes = np.random.default_rng(seed).standard_normal((d_sae, self.bits)).astype(np.float32)
        self.index = None
        self._slabs = None  # torch views of the planes, 256 columns each

    def encode(self, indptr: np.ndarray, ids: np.ndarray, weights: np.ndarray, chunk: int = 32_768) -> np.ndarray:
        """[n, bits/8] uint8 codes of the weighted rows given as CSR arrays (no need to normalise: a bit is a sign).

        A row's projections are a weighted sum of plane rows: torch's embedding_bag sums them straight from the
        sparse form, multi-threaded, over 256-column slabs of the planes (d_sae KiB each, which caches far better
        than whole 1024-float rows: faster than one pass over all columns or a scipy sparse × dense product,
        bench/README.md)."""
        import torch

        if self._slabs is None:
            self._slabs = [
                torch.from_numpy(np.ascontiguousarray(self.planes[:, j : j + 256])) for j in range(0, self.bits, 256)
            ]
        indptr = np.asarray(indptr, np.int64)
        n = len(indptr) - 1
        out = np.empty((n, self.bits // 8), np.uint8)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            a, b = indptr[s], indptr[e]
            idx, offsets = torch.from_numpy(np.asarray(ids[a:b], np.int64)), torch.from_numpy(indptr[s:e] - a)
            w = torch.from_numpy(np.asarray(weights[a:b], np.float32))
            for j, slab in enumerate(self._slabs):
                proj = torch.nn.functional.embedding_bag(idx, slab, offsets, mode="sum", per_sample_weights=w)
                out[s:e, j * 32 : j * 32 + slab.shape[1] // 8] = np.packbits((proj > 0).numpy(), axis=1)
        return out

    def build(self, codes: np.ndarray) -> None:
        import faiss

        self.index = faiss.IndexBinaryFlat(self.bits)
        if len(codes):
            self.index.add(np.ascontiguousarray(codes))

    def add(self, codes: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(codes))

    def candidates(self, q: sp.csr_matrix, r: int) -> np.ndarray:
        """[nq, r] stored rows with the nearest codes (-1 where the index holds fewer than r)."""
        _, rows = self.index.search(self.encode(q.indptr, q.indices, q.data), min(r, self.index.ntotal))
        return rows.astype(np.int64)

    def codes(self) -> np.ndarray:
        import faiss

        return (
            faiss.rev_swig_ptr(self.index.xb.data(), self.index.ntotal * self.bits // 8)
            .reshape(self.index.ntotal, self.bits // 8)
            .copy()
            if self.index.ntotal
            else np.zeros((0, self.bits // 8), np.uint8)
        )


def rescore(
    q_weighted: np.ndarray, rows: np.ndarray, store: CompactStore, row_factor: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine of candidate rows from the compact store; top-k per query (rows -1 / -inf padded).

    q_weighted: dense [nq, d_sae] (normalised query × IDF); row_factor: per stored row, scale / norm.
    """
    nq, r = rows.shape
    valid = rows >= 0
    flat = np.where(valid, rows, 0).ravel()
    lens, ids, code = store.gather(flat[valid.ravel()])  # ids decoded from the gathered gaps (segment cumsum)
    pair = np.repeat(np.flatnonzero(valid.ravel()), lens)
    contrib = q_weighted[pair // r, ids] * code.astype(np.float32)
    scores = np.bincount(pair, weights=contrib, minlength=nq * r).reshape(nq, r) * row_factor[flat].reshape(nq, r)
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    kk = min(k, r)
    order = np.lexsort((np.where(valid, rows, np.iinfo(np.int64).max), -scores), axis=1)[:, :kk]
    out_rows = np.full((nq, k), -1, np.int64)
    out_scores = np.full((nq, k), -np.inf, np.float32)
    out_rows[:, :kk] = np.where(
        np.isfinite(np.take_along_axis(scores, order, 1)), np.take_along_axis(rows, order, 1), -1
    )
    out_scores[:, :kk] = np.take_along_axis(scores, order, 1)
    return out_rows, out_scores
