"""Signature → weighted sparse vector: value transform × IDF, L2-normalised; cosine = dot product.

IDF is `log((1 + n) / (1 + df)) + 1` (scikit-learn's smooth IDF) over the documents the vectorizer has seen; it
down-weights latents that fire on nearly every text (position, formatting, "English prose"), which otherwise
dominate the cosine of max-pooled signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qscope.errors import InputError
from qscope.index.ragged import Ragged, to_csr

TRANSFORMS = ("raw", "sqrt", "log1p", "binary")


def apply_transform(values: np.ndarray, transform: str) -> np.ndarray:
    if transform == "raw":
        return values.astype(np.float32, copy=False)
    if transform == "sqrt":
        return np.sqrt(values, dtype=np.float32)
    if transform == "log1p":
        return np.log1p(values, dtype=np.float32)
    if transform == "binary":
        return (values > 0).astype(np.float32)
    raise InputError(f"unknown value transform {transform!r}; choose one of {TRANSFORMS}")


@dataclass
class SignatureVectorizer:
    """Turns signatures into L2-normalised, IDF-weighted sparse vectors.

    `df` counts, for each latent, the documents it appears in; `partial_fit` adds to it, so an index that grows
    keeps an IDF equal to the one it would have if built at once.
    """

    d_sae: int
    transform: str = "raw"
    """How a pooled activation becomes a weight before IDF: raw, sqrt, log1p or binary (presence)."""
    use_idf: bool = True
    df: np.ndarray = field(default=None)  # type: ignore[assignment]
    n_docs: int = 0

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise InputError(f"unknown value transform {self.transform!r}; choose one of {TRANSFORMS}")
        if self.df is None:
            self.df = np.zeros(self.d_sae, np.int64)

    def add_counts(self, feature_ids: np.ndarray, n_docs: int) -> None:
        """Update df from already de-duplicated signatures (each latent at most once per document)."""
        self.df += np.bincount(feature_ids.astype(np.int64), minlength=self.d_sae)
        self.n_docs += n_docs

    def partial_fit(self, r: Ragged) -> SignatureVectorizer:
        if r.n_rows:
            rows = np.repeat(np.arange(r.n_rows), np.diff(r.indptr))
            uniq = np.unique(rows * self.d_sae + r.feature_ids)  # each latent once per document
            self.df += np.bincount(uniq % self.d_sae, minlength=self.d_sae)
            self.n_docs += r.n_rows
        return self

    def fit(self, r: Ragged) -> SignatureVectorizer:
        self.df[:] = 0
        self.n_docs = 0
        return self.partial_fit(r)

    @property
    def idf(self) -> np.ndarray:
        if not self.use_idf:
            return np.ones(self.d_sae, np.float32)
        return (np.log((1.0 + self.n_docs) / (1.0 + self.df)) + 1.0).astype(np.float32)

    def transform_csr(self, r: Ragged, normalize: bool = True):
        """CSR [n, d_sae] float32 of weighted vectors (rows of an empty signature stay all-zero)."""
        x = to_csr(Ragged(r.indptr, r.feature_ids, apply_transform(r.values, self.transform)), self.d_sae)
        x.data *= self.idf[x.indices]
        if normalize:
            l2_normalize_rows(x)
        return x


def row_sums(indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Sum of each row's entries (float64); empty rows give 0 (np.add.reduceat does not)."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    return np.bincount(rows, weights=data, minlength=len(indptr) - 1)


def l2_normalize_rows(x) -> None:
    """In place, for a CSR matrix; zero rows stay zero."""
    norms = np.sqrt(row_sums(x.indptr, x.data.astype(np.float64) ** 2))
    scale = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-30), 0.0)
    x.data *= np.repeat(scale, np.diff(x.indptr)).astype(np.float32)
