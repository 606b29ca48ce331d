"""`SignatureIndex`: cosine search over SAE signatures — exact (scipy CSR) when small, FAISS SimHash + re-rank when
large.

Similarity = cosine of IDF-weighted signature vectors (see `vectors.py`). Up to `exact_threshold` rows every query
is scored against every row (a sparse matrix product). Above it, FAISS scans 768-bit SimHash codes of the rows
for the `rerank` (200) nearest candidates, which are then re-scored exactly from the compact store (see `lsh.py`,
`store.py`), so returned scores are always true cosines (of the 8-bit stored weights). IDF follows the rows the
index holds, so `add` in pieces equals one `add` of everything.

    index = SignatureIndex.from_parquet("corpus.signatures.parquet")
    ids, scores = index.search(q_feature_ids, q_feature_values, k=10)
    index.save("corpus.index"); index = SignatureIndex.load("corpus.index", expect=meta)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from qscope.errors import InputError
from qscope.index.lsh import SimHashCodes, rescore
from qscope.index.ragged import as_ragged
from qscope.index.store import CompactStore
from qscope.index.vectors import SignatureVectorizer, l2_normalize_rows, row_sums
from qscope.paths import atomic_path
from qscope.signatures import SignatureMeta, read_signatures

FORMAT_VERSION = 2  # 2: delta-coded latent ids (store.py); 1 stored uint16/int32 ids


class SearchResult(NamedTuple):
    """[nq, k] arrays; a row with fewer than k hits is padded with id None / position -1 / score -inf."""

    ids: np.ndarray  # object (str)
    scores: np.ndarray  # float32 cosine
    positions: np.ndarray  # int64 insertion positions (0 = first signature added)


class SignatureIndex:
    def __init__(
        self,
        meta: SignatureMeta | None = None,
        d_sae: int | None = None,
        *,
        transform: str = "raw",
        use_idf: bool = True,
        value_bits: int = 8,
        exact_threshold: int = 50_000,
        code_bits: int = 768,
        rerank: int = 200,
        seed: int = 0,
    ):
        """meta: what produced the signatures (checked on add_table / load); d_sae defaults to meta.d_sae.

        transform: activation → weight ("raw", "sqrt", "log1p", "binary"); value_bits: 8 (compact codes), 16, 32.
        exact_threshold: at most this many rows are searched exactly; above, SimHash codes of `code_bits` bits
        are built on first search and scanned by FAISS for `rerank` candidates per query (re-scored exactly).
        768 bits + 200 candidates met recall@10 ≥ 0.95 at ≤ 256 B per top-64 signature; 1024 bits buys more recall
        for 32 B more per signature (bench/README.md, "Signature index").
        """
        if d_sae is None:
            if meta is None:
                raise InputError("SignatureIndex needs d_sae (or a SignatureMeta that records it)")
            d_sae = meta.d_sae
        if meta is not None and meta.d_sae != d_sae:
            raise InputError(f"d_sae={d_sae} disagrees with meta.d_sae={meta.d_sae}")
        if d_sae < 1:
            raise InputError(f"d_sae must be positive, got {d_sae}")
        self.meta = meta
        self.d_sae = int(d_sae)
        self.vectorizer = SignatureVectorizer(self.d_sae, transform, use_idf)
        self.store = CompactStore(self.d_sae, transform, value_bits)
        self.exact_threshold = int(exact_threshold)
        self.code_bits = int(code_bits)
        self.rerank = int(rerank)
        self.seed = seed
        self._ids: list[np.ndarray] = []
        self._pos = np.zeros(0, np.int64)  # stored row → insertion position (identity today; kept for reordering)
        self._lsh: SimHashCodes | None = None
        self._trained_on = 0  # rows when the codes were built (IDF of that moment)
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------ building
    def __len__(self) -> int:
        return len(self.store)

    @property
    def ids(self) -> np.ndarray:
        """Ids in insertion order."""
        stored = self._stored_ids()
        out = np.empty(len(stored), object)
        out[self._pos] = stored
        return out

    def _stored_ids(self) -> np.ndarray:
        if len(self._ids) != 1:
            self._ids = [np.concatenate(self._ids) if self._ids else np.zeros(0, object)]
        return self._ids[0]

    def add(self, ids: Sequence[str], feature_ids: Any, feature_values: Any = None) -> None:
        """Append signatures (see `ragged.as_ragged` for accepted containers)."""
        r = as_ragged(feature_ids, feature_values, self.d_sae)
        ids = np.asarray([str(i) for i in ids], dtype=object)
        if len(ids) != r.n_rows:
            raise InputError(f"{len(ids)} ids for {r.n_rows} signatures")
        if r.n_rows == 0:
            return
        n0 = len(self)
        self.vectorizer.add_counts(self.store.append(r), r.n_rows)
        self._ids.append(ids)
        self._pos = np.concatenate([self._pos, np.arange(n0, n0 + r.n_rows)])
        self._cache.clear()
        if self._lsh is not None:
            if len(self) > 2 * self._trained_on:  # IDF has drifted: recode everything on the next search
                self._lsh, self._trained_on = None, 0
            else:
                self._lsh.add(self._encode_rows(np.arange(n0, n0 + r.n_rows)))

    def add_table(self, table, meta: SignatureMeta | None = None) -> None:
        """Add a signature table (qscope.signatures schema); its metadata must match the index's."""
        meta = meta or SignatureMeta.from_metadata(table.schema.metadata, "table")
        self._check_meta(meta, "signatures")
        self.add(table.column("id").to_pylist(), table.column("feature_ids"), table.column("feature_values"))

    def _check_meta(self, meta: SignatureMeta, what: str) -> None:
        if self.meta is None:
            if meta.d_sae != self.d_sae:
                raise InputError(f"{what} have d_sae={meta.d_sae}, the index {self.d_sae}")
            self.meta = meta
        else:
            self.meta.check_compatible(meta, what)

    @classmethod
    def from_parquet(cls, path: str | Path | Sequence[str | Path], **kw) -> SignatureIndex:
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if not paths:
            raise InputError("no signature files given")
        index = None
        for p in paths:
            table, meta = read_signatures(p)
            index = index or cls(meta, **kw)
            index.add_table(table, meta)
        return index

    # ------------------------------------------------------------------------------------------ vectors
    def _norms(self) -> np.ndarray:
        if "norms" not in self._cache:
            r = self.store.ragged()
            w = r.values * self.vectorizer.idf[r.feature_ids]
            self._cache["norms"] = np.sqrt(row_sums(r.indptr, w.astype(np.float64) ** 2)).astype(np.float32)
        return self._cache["norms"]

    def _encode_rows(self, rows: np.ndarray | None = None) -> np.ndarray:
        """SimHash codes of stored rows (IDF-weighted; unnormalised, as a sign does not need it)."""
        r = self.store.ragged(rows)
        return self._lsh.encode(r.indptr, r.feature_ids, r.values * self.vectorizer.idf[r.feature_ids])

    def _weighted_rows(self, rows: np.ndarray | None = None) -> sp.csr_matrix:
        """Normalised IDF-weighted CSR of stored rows (the exact path's matrix)."""
        r = self.store.ragged(rows)
        x = sp.csr_matrix(
            (r.values * self.vectorizer.idf[r.feature_ids], r.feature_ids.astype(np.int32), r.indptr),
            shape=(r.n_rows, self.d_sae),
        )
        l2_normalize_rows(x)
        return x

    def vectorize(self, feature_ids: Any, feature_values: Any = None) -> sp.csr_matrix:
        """Queries → normalised IDF-weighted CSR, with the index's transform and current IDF."""
        return self.vectorizer.transform_csr(as_ragged(feature_ids, feature_values, self.d_sae))

    # ------------------------------------------------------------------------------------------ search
    @property
    def uses_codes(self) -> bool:
        return len(self) > self.exact_threshold

    def search(
        self,
        feature_ids: Any,
        feature_values: Any = None,
        k: int = 10,
        exact: bool | None = None,
        rerank: int | None = None,
    ) -> SearchResult:
        """Top-k most similar stored signatures per query (cosine, best first).

        exact: None = by size (exact up to `exact_threshold` rows), True / False to force a path.
        rerank: candidates re-scored per query on the approximate path (more = higher recall, slower).
        """
        return self.search_vectors(self.vectorize(feature_ids, feature_values), k, exact, rerank)

    def search_vectors(
        self, q: sp.csr_matrix, k: int = 10, exact: bool | None = None, rerank: int | None = None
    ) -> SearchResult:
        if len(self) == 0:
            raise InputError("the index is empty: add signatures before searching")
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        exact = (not self.uses_codes) if exact is None else exact
        rows, scores = self._search_exact(q, k) if exact else self._search_codes(q, k, rerank or self.rerank)
        ids = self._stored_ids()
        out_ids = np.empty(rows.shape, object)
        ok = rows >= 0
        out_ids[ok] = ids[rows[ok]]
        positions = np.where(ok, self._pos[np.maximum(rows, 0)], -1)
        return SearchResult(out_ids, scores, positions)

    def _search_exact(self, q: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        if "x" not in self._cache:
            self._cache["x"] = self._weighted_rows()
        x = self._cache["x"]
        n = x.shape[0]
        kk = min(k, n)
        rows = np.full((q.shape[0], k), -1, np.int64)
        out = np.full((q.shape[0], k), -np.inf, np.float32)
        chunk = max(1, min(1024, (1 << 25) // max(n, 1)))
        xt = self._cache.setdefault("xt", x.T.tocsr())
        for s in range(0, q.shape[0], chunk):
            scores = (q[s : s + chunk] @ xt).toarray()  # sparse × sparse: cost ∝ posting lists of the query latents
            top = (
                np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(scores), 1))
            )
            top_scores = np.take_along_axis(scores, top, 1)
            order = np.lexsort((top, -top_scores), axis=1)
            rows[s : s + chunk, :kk] = np.take_along_axis(top, order, 1)
            out[s : s + chunk, :kk] = np.take_along_axis(top_scores, order, 1)
        return rows, out

    def build_codes(self) -> None:
        """Build the SimHash codes + FAISS binary index now (search does it on demand above `exact_threshold`)."""
        self._lsh = SimHashCodes(self.d_sae, self.code_bits, self.seed)
        self._lsh.build(self._encode_rows())
        self._trained_on = len(self)

    def _search_codes(self, q: sp.csr_matrix, k: int, rerank: int) -> tuple[np.ndarray, np.ndarray]:
        if self._lsh is None:
            self.build_codes()
        idf = self.vectorizer.idf
        norms = self._norms()
        factor = np.where(norms > 0, self.store.scale / np.maximum(norms, 1e-30), 0.0).astype(np.float32)
        rows = np.full((q.shape[0], k), -1, np.int64)
        out = np.full((q.shape[0], k), -np.inf, np.float32)
        for s in range(0, q.shape[0], 256):  # bounded dense query block: 256 × d_sae floats
            qb = q[s : s + 256]
            cand = self._lsh.candidates(qb, max(rerank, k))
            rows[s : s + 256], out[s : s + 256] = rescore(qb.toarray() * idf, cand, self.store, factor, k)
        return rows, out

    # ------------------------------------------------------------------------------------------ rows
    def stored_vectors(self, positions: np.ndarray | None = None) -> sp.csr_matrix:
        """Normalised weighted vectors of stored signatures, by insertion position (all, in insertion order)."""
        inv = np.empty(len(self), np.int64)
        inv[self._pos] = np.arange(len(self))
        rows = inv if positions is None else inv[np.asarray(positions, np.int64)]
        return self._weighted_rows(rows)

    def nbytes(self) -> int:
        """Bytes the index holds, ids excluded: compact store + SimHash codes (once built)."""
        codes = len(self) * self.code_bits // 8 if self._lsh is not None else 0
        return self.store.nbytes() + codes

    # ------------------------------------------------------------------------------------------ persistence
    def config(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "d_sae": self.d_sae,
            "transform": self.vectorizer.transform,
            "use_idf": self.vectorizer.use_idf,
            "value_bits": self.store.value_bits,
            "delta_bits": self.store.delta_bits,
            "exact_threshold": self.exact_threshold,
            "code_bits": self.code_bits,
            "rerank": self.rerank,
            "seed": self.seed,
            "trained_on": self._trained_on,
            "meta": None if self.meta is None else {k.decode(): v.decode() for k, v in self.meta.to_metadata().items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write the index directory atomically (readers never see a half-written index)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir()
            (tmp / "index.json").write_text(json.dumps(self.config(), indent=1))
            arrays = dict(
                indptr=self.store.indptr,
                delta=self.store.delta,
                code=self.store.code,
                scale=self.store.scale,
                df=self.vectorizer.df,
                n_docs=np.array(self.vectorizer.n_docs),
            )
            if self._lsh is not None:
                arrays["codes"] = self._lsh.codes()
            np.savez(tmp / "arrays.npz", **arrays)
            pq.write_table(pa.table({"id": pa.array(list(self._stored_ids()), pa.string())}), tmp / "ids.parquet")
        return path

    @classmethod
    def load(cls, path: str | Path, expect: SignatureMeta | None = None) -> SignatureIndex:
        """Load a saved index; with `expect`, raise InputError if it was built from another model / SAE / layer."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.exists():
            raise InputError(f"{path} is not a qscope signature index: it does not exist")
        if not (path / "index.json").is_file():
            raise InputError(f"{path} is not a qscope signature index (no index.json)")
        cfg = json.loads((path / "index.json").read_text())
        if cfg.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"{path}: index format {cfg.get('format_version')}, this qscope reads {FORMAT_VERSION}; "
                "rebuild the index from its signatures (SignatureIndex.from_parquet)"
            )
        meta = None
        if cfg["meta"] is not None:
            meta = SignatureMeta.from_metadata({k.encode(): v.encode() for k, v in cfg["meta"].items()}, str(path))
        if expect is not None:
            if meta is None:
                raise InputError(f"{path}: index records no SAE/model metadata, cannot check it against {expect.sae}")
            expect.check_compatible(meta, f"index {path}")
        index = cls(
            meta,
            cfg["d_sae"],
            transform=cfg["transform"],
            use_idf=cfg["use_idf"],
            value_bits=cfg["value_bits"],
            exact_threshold=cfg["exact_threshold"],
            code_bits=cfg["code_bits"],
            rerank=cfg["rerank"],
            seed=cfg["seed"],
        )
        z = np.load(path / "arrays.npz")
        index.store.delta_bits = cfg["delta_bits"]
        index.store.indptr, index.store.delta, index.store.code, index.store.scale = (
            z["indptr"],
            z["delta"],
            z["code"],
            z["scale"],
        )
        index._pos = np.arange(len(index.store), dtype=np.int64)
        index.vectorizer.df, index.vectorizer.n_docs = z["df"], int(z["n_docs"])
        index._ids = [np.asarray(pq.read_table(path / "ids.parquet").column("id").to_pylist(), dtype=object)]
        if "codes" in z.files:
            index._lsh = SimHashCodes(index.d_sae, index.code_bits, index.seed)
            index._lsh.build(z["codes"])
            index._trained_on = int(cfg["trained_on"])
        return index
