"""Similarity search over SAE signatures: exact sparse cosine at small scale, FAISS-scanned SimHash codes + exact
re-rank above.

Public API: `SignatureIndex`, `knn_classify`, `near_duplicates`, `dedup_keep_mask`, `duplicates_of`,
`SignatureVectorizer`, `as_ragged`. FAISS is imported only when codes are built or loaded.
"""

from qscope.index.neighbors import (
    DuplicatePairs,
    KnnLabels,
    dedup_keep_mask,
    duplicates_of,
    knn_classify,
    near_duplicates,
)
from qscope.index.ragged import Ragged, as_ragged
from qscope.index.signature_index import SearchResult, SignatureIndex
from qscope.index.vectors import SignatureVectorizer

__all__ = [
    "SignatureIndex",
    "SearchResult",
    "knn_classify",
    "KnnLabels",
    "near_duplicates",
    "DuplicatePairs",
    "dedup_keep_mask",
    "duplicates_of",
    "SignatureVectorizer",
    "as_ragged",
    "Ragged",
]
