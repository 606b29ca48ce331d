"""SignatureIndex at scale: recall@10 of the SimHash + re-rank path vs exact sparse cosine, queries/s, bytes.

Synthetic but shaped like real SAE signatures (d_sae 8192, top-64 per document):
- latent frequencies are Zipfian (a few latents fire in most documents, most are rare);
- documents come from topics → subtopics (latent sets drawn with Zipf weights), plus generic background latents,
  so neighbourhoods exist the way they do in a real corpus; activations are log-normal, value-sorted;
- 2 % of documents are noisy near-copies of another document (real corpora are full of them).

    nice python bench/index.py                 # 100k and 1M; SimHash 768 and 1024 bits, re-rank 100 and 200
    python bench/index.py --sizes 100000 --rerank 100 200 300     # the README's 100k table
    python bench/index.py --sizes 20000 --queries 300             # quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

D_SAE, TOP_N = 8192, 64


class Corpus:
    def __init__(self, n_topics: int = 2000, n_sub: int = 16, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.rng = rng
        zipf = 1.0 / np.arange(1, D_SAE + 1) ** 1.05
        self.perm = rng.permutation(D_SAE)  # latent ids do not encode frequency rank
        self.p = zipf / zipf.sum()
        self.n_topics, self.n_sub = n_topics, n_sub
        # topic: 160 latents drawn without replacement with weights √p (so popular latents recur across topics),
        # all topics at once by the Gumbel-top-k trick (same law as sequential weighted draws); subtopic: 40 of them
        keys = 0.5 * np.log(self.p) + rng.gumbel(size=(n_topics, D_SAE))
        self.topic = self.perm[np.argpartition(-keys, 160, axis=1)[:, :160]]
        self.sub = np.take_along_axis(self.topic[:, None, :], _pick(rng, (n_topics, n_sub, 160), 40), 2)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """[n, 64] latent ids and values (value-descending, zeros = fewer than 64 distinct latents), no per-row loop."""
        t = rng.integers(0, self.n_topics, n)
        s = rng.integers(0, self.n_sub, n)
        f_sub = np.take_along_axis(self.sub[t, s], _pick(rng, (n, 40), 28), 1)
        f_top = np.take_along_axis(self.topic[t], _pick(rng, (n, 160), 16), 1)
        f_bg = self.perm[rng.choice(D_SAE, (n, 20), p=self.p)]
        fids = np.concatenate([f_sub, f_top, f_bg], 1)
        vals = np.concatenate(
            [rng.lognormal(1.0, 0.5, (n, 28)), rng.lognormal(0.6, 0.5, (n, 16)), rng.lognormal(0.2, 0.6, (n, 20))], 1
        ).astype(np.float32)
        # drop repeated latents within a row (keep the larger value), then keep top-64 by value
        # one int64 sort instead of a lexsort: id in the high half, then value descending (positive float32 bit
        # patterns order like the values)
        key = (fids.astype(np.int64) << 32) | (0xFFFFFFFF - vals.view(np.uint32).astype(np.int64))
        key.sort(axis=1)
        fids = key >> 32
        vals = (0xFFFFFFFF - (key & 0xFFFFFFFF)).astype(np.uint32).view(np.float32)
        dup = np.zeros_like(fids, bool)
        dup[:, 1:] = fids[:, 1:] == fids[:, :-1]
        vals[dup] = 0.0
        order = np.argsort(-vals, 1)[:, :TOP_N]
        return np.take_along_axis(fids, order, 1).astype(np.int32), np.take_along_axis(vals, order, 1)

    def make(self, n: int, seed: int, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        parts = [self.sample(min(chunk, n - s), rng) for s in range(0, n, chunk)]
        fids, vals = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        # near-copies: 2 % of rows become a perturbed copy of an earlier row
        dst = rng.choice(np.arange(n // 2, n), n // 50, replace=False)
        src = rng.integers(0, n // 2, len(dst))
        fids[dst] = fids[src]
        vals[dst] = vals[src] * rng.lognormal(0, 0.1, (len(dst), TOP_N)).astype(np.float32)
        return fids, vals


def _pick(rng: np.random.Generator, shape: tuple, k: int) -> np.ndarray:
    """Positions of k of the last axis's entries, uniformly without replacement (argpartition of random keys: a
    full argsort per row was the generator's slowest step)."""
    return np.argpartition(rng.random(shape, dtype=np.float32), k, axis=-1)[..., :k]


def to_lists(fids: np.ndarray, vals: np.ndarray):
    """Dense [n, 64] (zero-padded) → pyarrow list arrays, the form signatures have when read from Parquet."""
    import pyarrow as pa

    keep = vals > 0
    offsets = np.concatenate([[0], np.cumsum(keep.sum(1))]).astype(np.int64)
    return (
        pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(fids[keep])),
        pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(vals[keep])),
    )


def recall_at(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(x[:k]) & set(y[:k]) - {-1}) / k for x, y in zip(a, b)]))


def run_size(n: int, n_queries: int, corpus: Corpus, reranks: list[int], code_bits: list[int], alt: bool) -> list[dict]:
    from qscope.index import SignatureIndex

    rows = []
    t = time.time()
    fids, vals = corpus.make(n, seed=n)
    qf, qv = corpus.sample(n_queries, np.random.default_rng(12345))
    t_gen = time.time() - t
    t = time.time()
    index = SignatureIndex(d_sae=D_SAE)
    fl, vl = to_lists(fids, vals)
    index.add(np.arange(n).astype(str), fl, vl)
    t_add = time.time() - t
    q = index.vectorize(*to_lists(qf, qv))
    print(
        f"n={n:,}: generated in {t_gen:.1f}s, added in {t_add:.1f}s (avg {np.mean((vals > 0).sum(1)):.1f} latents/doc)",
        flush=True,
    )

    t = time.time()
    exact = index.search_vectors(q, k=10, exact=True)
    t_exact = time.time() - t
    store_b = index.store.nbytes() / n
    rows.append(row(n, "exact sparse cosine (scipy CSR)", "-", 1.0, n_queries / t_exact, store_b, 0, t_add))
    print(f"  exact: {n_queries / t_exact:.0f} q/s ({t_exact:.1f}s)", flush=True)

    for bits in code_bits:
        index.code_bits = bits
        t = time.time()
        index.build_codes()
        t_codes = time.time() - t
        print(f"  SimHash {bits}-bit codes built in {t_codes:.1f}s", flush=True)
        for rerank in reranks:
            t = time.time()
            approx = index.search_vectors(q, k=10, exact=False, rerank=rerank)
            dt = time.time() - t
            method = f"qscope: SimHash {bits} bits (FAISS binary) + exact re-rank"
            recall = recall_at(approx.positions, exact.positions)
            rows.append(
                row(
                    n, method, f"rerank={rerank}", recall, n_queries / dt, index.nbytes() / n, bits / 8, t_add + t_codes
                )
            )
            print(f"  rerank={rerank}: recall@10={rows[-1]['recall']:.3f}  {rows[-1]['qps']:.0f} q/s", flush=True)
    if alt:
        for r in alternatives(index, q, exact.positions, n, store_b):
            print(
                f"  {r['method']} ({r['param']}): recall@10={r['recall']:.3f}"
                + (f" / {r['recall_rerank']:.3f}" if "recall_rerank" in r else ""),
                flush=True,
            )
            rows.append(r)
    return rows


def row(n, method, param, recall, qps, bytes_per_doc, code_bytes, build) -> dict:
    """One table row: index size `n`, recall@10, queries/s, bytes per document (all / the code alone), build s."""
    return {
        "n": n,
        "method": method,
        "param": param,
        "recall": recall,
        "qps": qps,
        "bytes": bytes_per_doc,
        "code_bytes": code_bytes,
        "build": build,
    }


def alternatives(index, q, truth: np.ndarray, n: int, store_b: float) -> list[dict]:
    """Dense-code schemes for comparison: feature hashing → flat / IVF-PQ, and SimHash bits (Hamming)."""
    import faiss

    out = []

    def add(method, param, recall, qps, code_bytes, stored=0, build=0.0):
        """A row whose bytes per document are the code's plus `stored` (the store an exact re-rank reads)."""
        out.append(row(n, method, param, recall, qps, code_bytes + stored, code_bytes, build))

    x = index._weighted_rows()  # stored (grouped) order; map hits back to insertion positions
    pos = index._pos
    for dim in (256,):
        h = hashing_matrix(D_SAE, dim)
        xd, qd = project(x, h), project(q, h)
        flat = faiss.IndexFlatIP(dim)
        flat.add(xd)
        t = time.time()
        _, hits = flat.search(qd, 10)
        dt = time.time() - t
        add(f"feature hashing {dim}-d, FAISS flat", "float32", recall_at(pos[hits], truth), len(qd) / dt, dim * 4)
        _, hits = flat.search(qd, 100)
        recall = _rerank_recall(x, q, hits, pos, truth)
        add(f"feature hashing {dim}-d, FAISS flat", "top-100 + exact rerank", recall, float("nan"), dim * 4, store_b)
        t = time.time()
        pq = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, int(np.sqrt(n)), 64, 8, faiss.METRIC_INNER_PRODUCT)
        pq.train(xd[np.random.default_rng(0).choice(n, min(n, 100_000), replace=False)])
        pq.add(xd)
        pq.nprobe = 32
        tb = time.time() - t
        t = time.time()
        _, hits = pq.search(qd, 100)
        dt = time.time() - t
        recall = _rerank_recall(x, q, hits, pos, truth)
        method, param = f"feature hashing {dim}-d, FAISS IVF-PQ64", "nprobe=32, top-100 + exact rerank"
        add(method, param, recall, len(qd) / dt, 64 + 8, store_b, tb)
        del flat, pq
    bits = 512
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((D_SAE, bits)).astype(np.float32)
    xb = np.packbits((x @ proj) > 0, axis=1)
    qb = np.packbits((q @ proj) > 0, axis=1)
    bidx = faiss.IndexBinaryFlat(bits)
    bidx.add(xb)
    t = time.time()
    _, hits = bidx.search(qb, 1000)
    dt = time.time() - t
    recall = recall_at(pos[hits[:, :10]], truth)
    method, param = f"SimHash {bits} bits, FAISS binary flat", "top-10 / top-1000 + rerank"
    add(method, param, recall, len(qb) / dt, bits // 8, store_b)
    out[-1]["recall_rerank"] = _rerank_recall(x, q, hits, pos, truth)
    return out


def hashing_matrix(d_sae: int, dim: int, seed: int = 0) -> sp.csr_matrix:
    """Signed feature hashing d_sae → dim (one ±1 per latent)."""
    rng = np.random.default_rng(seed)
    return sp.csr_matrix(
        (rng.choice(np.array([-1.0, 1.0], np.float32), d_sae), rng.integers(0, dim, d_sae), np.arange(d_sae + 1)),
        shape=(d_sae, dim),
    )


def project(x, h) -> np.ndarray:
    out = (x @ h).toarray().astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _rerank_recall(x, q, hits, pos, truth) -> float:
    best = []
    for i in range(q.shape[0]):
        h = hits[i][hits[i] >= 0]
        sc = (x[h] @ q[i].T).toarray().ravel()
        best.append(pos[h[np.argsort(-sc)[:10]]])
    return recall_at(np.array(best), truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--rerank", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--code-bits", type=int, nargs="+", default=[768, 1024])
    ap.add_argument("--alt", action="store_true", help="also measure dense-code schemes (at the smallest size)")
    args = ap.parse_args()
    t0 = time.time()
    corpus = Corpus()
    rows = []
    for i, n in enumerate(args.sizes):
        # exact search is the slow side at 1M (a few q/s): fewer queries there, still 2000+ neighbours scored
        nq = args.queries if n <= 200_000 else max(100, args.queries // 5)
        rows += run_size(n, nq, corpus, args.rerank, args.code_bits, alt=args.alt and i == 0)
    print(
        "\n| signatures | method | setting | recall@10 | queries/s | code bytes/sig | total bytes/sig |\n"
        "|---:|---|---|---:|---:|---:|---:|"
    )
    for r in rows:
        rec = f"{r['recall']:.3f}" + (f" / {r['recall_rerank']:.3f}" if "recall_rerank" in r else "")
        qps = "-" if not np.isfinite(r["qps"]) else f"{r['qps']:,.0f}"
        print(
            f"| {r['n']:,} | {r['method']} | {r['param']} | {rec} | {qps} | {r['code_bytes']:.0f} | {r['bytes']:.0f} |"
        )
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
