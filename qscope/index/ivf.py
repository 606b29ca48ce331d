"""Coarse partition of signatures with FAISS (k-means + centroid search), scored exactly inside the probed lists.

Why this scheme: a signature is 64 of 8192 latents. Dense codes of it (hashing + PQ, SimHash bits) blur exactly the
small differences that decide the top-10, so they need a large re-rank set; here FAISS only decides *where to look*
(an IVF over a 256-d feature-hashed projection, k-means trained, centroids searched with FAISS), and the rows of the
probed lists are scored with the true IDF-weighted sparse cosine from the compact store. Recall is then only limited
by the partition (raise `nprobe`), and no second copy of the vectors is kept: bytes per signature = the compact
store + 4 bytes of list id.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from qscope.errors import InputError


def hashing_matrix(d_sae: int, dim: int, seed: int = 0) -> sp.csr_matrix:
    """Signed feature hashing d_sae → dim (one ±1 per latent): preserves inner products in expectation."""
    rng = np.random.default_rng(seed)
    bucket = rng.integers(0, dim, d_sae)
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), d_sae)
    return sp.csr_matrix((sign, bucket, np.arange(d_sae + 1)), shape=(d_sae, dim))


def project(x: sp.csr_matrix, h: sp.csr_matrix, chunk: int = 200_000) -> np.ndarray:
    """Rows of a (normalised) sparse matrix → L2-normalised dense float32 [n, dim]."""
    out = np.empty((x.shape[0], h.shape[1]), np.float32)
    for s in range(0, x.shape[0], chunk):
        out[s: s + chunk] = (x[s: s + chunk] @ h).toarray()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.where(norms > 0, norms, 1.0)
    return out


class CoarsePartition:
    """k-means lists over hashed projections; `quantizer` is a FAISS index over the centroids."""

    def __init__(self, d_sae: int, nlist: int, dim: int = 256, seed: int = 0):
        if nlist < 1:
            raise InputError(f"nlist must be >= 1, got {nlist}")
        self.d_sae, self.nlist, self.dim, self.seed = d_sae, int(nlist), int(dim), seed
        self.h = hashing_matrix(d_sae, dim, seed)
        self.quantizer = None

    def train(self, x: sp.csr_matrix, max_points_per_list: int = 64, niter: int = 12) -> None:
        import faiss

        rng = np.random.default_rng(self.seed)
        n = x.shape[0]
        if n < self.nlist:
            raise InputError(f"cannot train {self.nlist} lists on {n} signatures")
        sample = np.sort(rng.choice(n, min(n, self.nlist * max_points_per_list), replace=False))
        dense = project(x[sample], self.h)
        km = faiss.Kmeans(self.dim, self.nlist, niter=niter, seed=self.seed, spherical=True, verbose=False,
                          max_points_per_centroid=max_points_per_list)
        km.train(dense)
        self.set_centroids(km.centroids)

    def set_centroids(self, centroids: np.ndarray) -> None:
        import faiss

        centroids = np.ascontiguousarray(centroids, np.float32)
        if len(centroids) >= 2048:  # an HNSW graph over many centroids assigns 1M rows in seconds, not minutes
            q = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            q.hnsw.efSearch = 128
        else:
            q = faiss.IndexFlatIP(self.dim)
        q.add(centroids)
        self.quantizer = q
        self.centroids = centroids

    def probe(self, x: sp.csr_matrix, nprobe: int) -> np.ndarray:
        """[n, nprobe] list ids, nearest first."""
        if self.quantizer is None:
            raise InputError("the coarse partition is not trained")
        _, lists = self.quantizer.search(project(x, self.h), min(nprobe, self.nlist))
        return lists

    def assign(self, x: sp.csr_matrix) -> np.ndarray:
        return self.probe(x, 1)[:, 0].astype(np.int32)

    # --- persistence ------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"nlist": self.nlist, "dim": self.dim, "seed": self.seed, "centroids": self.centroids}

    @classmethod
    def from_state(cls, d_sae: int, st: dict) -> "CoarsePartition":
        p = cls(d_sae, int(st["nlist"]), int(st["dim"]), int(st["seed"]))
        p.set_centroids(st["centroids"])
        return p


def scan_lists(
    q_weighted: np.ndarray,
    probes: np.ndarray,
    list_bounds: np.ndarray,
    indptr: np.ndarray,
    fid: np.ndarray,
    code: np.ndarray,
    row_factor: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of the rows of the probed lists; returns the top-k (rows, scores) per query.

    q_weighted: dense [nq, d_sae] (query weights × IDF, already normalised); row_factor: per row, the factor that
    turns sum(q[fid] * code) into the cosine (scale / norm). Lists are contiguous row blocks [list_bounds[l],
    list_bounds[l+1]).
    """
    nq = len(q_weighted)
    cand_rows: list[list[np.ndarray]] = [[] for _ in range(nq)]
    cand_scores: list[list[np.ndarray]] = [[] for _ in range(nq)]
    flat_q = np.repeat(np.arange(nq), probes.shape[1])
    flat_l = probes.ravel()
    ok = flat_l >= 0
    flat_q, flat_l = flat_q[ok], flat_l[ok]
    order = np.argsort(flat_l, kind="stable")
    flat_q, flat_l = flat_q[order], flat_l[order]
    starts = np.flatnonzero(np.r_[True, flat_l[1:] != flat_l[:-1]])
    ends = np.r_[starts[1:], len(flat_l)]
    d = q_weighted.shape[1]
    for s, e in zip(starts, ends):
        lst = flat_l[s]
        r0, r1 = int(list_bounds[lst]), int(list_bounds[lst + 1])
        if r1 == r0:
            continue
        a, b = int(indptr[r0]), int(indptr[r1])
        block = sp.csr_matrix(
            (code[a:b].astype(np.float32), fid[a:b].astype(np.int32), (indptr[r0: r1 + 1] - a)), shape=(r1 - r0, d)
        )
        qs = flat_q[s:e]
        scores = (block @ q_weighted[qs].T).T * row_factor[r0:r1]  # [len(qs), rows in list]
        kk = min(k, r1 - r0)
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < r1 - r0 else np.tile(np.arange(r1 - r0), (len(qs), 1))
        top_scores = np.take_along_axis(scores, top, 1)
        for j, qi in enumerate(qs):
            cand_rows[qi].append(top[j] + r0)
            cand_scores[qi].append(top_scores[j])
    rows = np.full((nq, k), -1, np.int64)
    out = np.full((nq, k), -np.inf, np.float32)
    for qi in range(nq):
        if not cand_rows[qi]:
            continue
        r = np.concatenate(cand_rows[qi])
        sc = np.concatenate(cand_scores[qi])
        best = np.lexsort((r, -sc))[:k]
        rows[qi, : len(best)] = r[best]
        out[qi, : len(best)] = sc[best]
    return rows, out
