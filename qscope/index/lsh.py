"""Approximate candidates for large indexes: SimHash bit codes of the weighted vectors, scanned by FAISS.

Bit b of a signature's code is the sign of its IDF-weighted vector's dot product with a fixed Gaussian direction
(random-hyperplane LSH, Charikar 2002): the Hamming distance between two codes estimates the angle between the two
vectors, whatever the data's structure. FAISS scans the codes (SIMD popcount; `IndexBinaryFlat`) for the
`rerank` nearest, and those are re-scored exactly from the compact store, so the final top-k carries exact
cosines. Measured (bench/index.py): 1024-bit codes + top-100 re-rank keep recall@10 at ~0.98 on corpora where
k-means partitions (IVF, in hashed or latent space) reached 0.6-0.8 at the same cost.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from qscope.errors import InputError


class SimHashCodes:
    def __init__(self, d_sae: int, bits: int = 1024, seed: int = 0):
        if bits <= 0 or bits % 64:
            raise InputError(f"code bits must be a positive multiple of 64, got {bits}")
        self.d_sae, self.bits, self.seed = d_sae, int(bits), int(seed)
        self.planes = np.random.default_rng(seed).standard_normal((d_sae, self.bits)).astype(np.float32)
        self.index = None

    def encode(self, x: sp.csr_matrix, chunk: int = 50_000) -> np.ndarray:
        """[n, bits/8] uint8 codes of normalised weighted rows."""
        out = np.empty((x.shape[0], self.bits // 8), np.uint8)
        for s in range(0, x.shape[0], chunk):
            out[s: s + chunk] = np.packbits(np.asarray(x[s: s + chunk] @ self.planes) > 0, axis=1)
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
        _, rows = self.index.search(self.encode(q), min(r, self.index.ntotal))
        return rows.astype(np.int64)

    def codes(self) -> np.ndarray:
        import faiss

        return faiss.rev_swig_ptr(self.index.xb.data(), self.index.ntotal * self.bits // 8).reshape(
            self.index.ntotal, self.bits // 8).copy() if self.index.ntotal else np.zeros((0, self.bits // 8), np.uint8)


def rescore(q_weighted: np.ndarray, rows: np.ndarray, indptr: np.ndarray, fid: np.ndarray, code: np.ndarray,
            row_factor: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine of candidate rows from the compact store; top-k per query (rows -1 / -inf padded).

    q_weighted: dense [nq, d_sae] (normalised query × IDF); row_factor: per stored row, scale / norm.
    """
    nq, r = rows.shape
    valid = rows >= 0
    flat = np.where(valid, rows, 0).ravel()
    lens = np.diff(indptr)[flat] * valid.ravel()
    starts = indptr[:-1][flat]
    src = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
    pair = np.repeat(np.arange(nq * r), lens)
    qid = pair // r
    contrib = q_weighted[qid, fid[src].astype(np.int64)] * code[src].astype(np.float32)
    scores = np.bincount(pair, weights=contrib, minlength=nq * r).reshape(nq, r) * row_factor[flat].reshape(nq, r)
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    kk = min(k, r)
    order = np.lexsort((np.where(valid, rows, np.iinfo(np.int64).max), -scores), axis=1)[:, :kk]
    out_rows = np.full((nq, k), -1, np.int64)
    out_scores = np.full((nq, k), -np.inf, np.float32)
    out_rows[:, :kk] = np.where(np.isfinite(np.take_along_axis(scores, order, 1)), np.take_along_axis(rows, order, 1), -1)
    out_scores[:, :kk] = np.take_along_axis(scores, order, 1)
    return out_rows, out_scores
