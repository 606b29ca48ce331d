"""What the index is used for besides search: kNN labels and near-duplicate detection / removal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from qscope.errors import InputError
from qscope.index.signature_index import SignatureIndex


class KnnLabels(NamedTuple):
    classes: list[str]
    scores: np.ndarray  # [nq, n_classes]: similarity-weighted vote share of each class among the k neighbours
    labels: np.ndarray  # [nq] argmax class (object)


def knn_classify(
    index: SignatureIndex,
    labels: Sequence[Any],
    feature_ids: Any,
    feature_values: Any = None,
    k: int = 10,
    exclude_self: bool = False,
    weighted: bool = True,
) -> KnnLabels:
    """Label queries by their k nearest labelled signatures.

    labels: one per indexed signature, in insertion order (None = unlabelled, ignored in votes; to vote only among
    labelled rows build the index from labelled rows). exclude_self: drop each query's hit at score >= 0.9999 with
    the same position (for leave-one-out on the indexed rows themselves, queries given in insertion order).
    """
    labels = np.asarray(labels, dtype=object)
    if len(labels) != len(index):
        raise InputError(f"{len(labels)} labels for an index of {len(index)} signatures")
    classes = sorted({str(x) for x in labels if x is not None})
    if not classes:
        raise InputError("no labelled signatures: every label is None")
    res = index.search(feature_ids, feature_values, k=k + int(exclude_self))
    pos, sc = res.positions, res.scores
    if exclude_self:
        own = pos == np.arange(len(pos))[:, None]
        sc = np.where(own, -np.inf, sc)
    cls_of = {c: i for i, c in enumerate(classes)}
    votes = np.zeros((len(pos), len(classes)), np.float64)
    for qi in range(len(pos)):
        for p, s in zip(pos[qi], sc[qi]):
            if p < 0 or not np.isfinite(s) or labels[p] is None:
                continue
            votes[qi, cls_of[str(labels[p])]] += max(float(s), 0.0) + 1e-6 if weighted else 1.0
    total = votes.sum(1, keepdims=True)
    scores = np.divide(votes, total, out=np.zeros_like(votes), where=total > 0).astype(np.float32)
    return KnnLabels(classes, scores, np.asarray(classes, dtype=object)[scores.argmax(1)])


class DuplicatePairs(NamedTuple):
    """Pairs (a, b) by insertion position, a < b, cosine >= threshold."""

    a: np.ndarray
    b: np.ndarray
    scores: np.ndarray


def near_duplicates(
    index: SignatureIndex, threshold: float = 0.95, k: int = 10, batch_size: int = 4096
) -> DuplicatePairs:
    """All pairs of indexed signatures with cosine >= threshold (each row looks at its k nearest rows)."""
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold must be in (0, 1], got {threshold}")
    a_all, b_all, s_all = [], [], []
    for s in range(0, len(index), batch_size):
        positions = np.arange(s, min(s + batch_size, len(index)))
        res = index.search_vectors(index.stored_vectors(positions), k=k + 1)
        qa = np.repeat(positions, res.positions.shape[1])
        qb, sc = res.positions.ravel(), res.scores.ravel()
        keep = (qb >= 0) & (qb != qa) & (sc >= threshold - 1e-6)
        lo, hi = np.minimum(qa[keep], qb[keep]), np.maximum(qa[keep], qb[keep])
        a_all.append(lo), b_all.append(hi), s_all.append(sc[keep])
    if not a_all:
        return DuplicatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    a, b, sc = np.concatenate(a_all), np.concatenate(b_all), np.concatenate(s_all)
    key, first = np.unique(a * len(index) + b, return_index=True)
    return DuplicatePairs(a[first], b[first], sc[first])


def dedup_keep_mask(index: SignatureIndex, threshold: float = 0.95, k: int = 10) -> np.ndarray:
    """Boolean per insertion position: keep a signature unless an earlier *kept* one is a near-duplicate of it."""
    pairs = near_duplicates(index, threshold, k)
    keep = np.ones(len(index), bool)
    order = np.lexsort((pairs.a, pairs.b))
    for a, b in zip(pairs.a[order], pairs.b[order]):
        if keep[a]:
            keep[b] = False
    return keep


def duplicates_of(
    index: SignatureIndex, feature_ids: Any, feature_values: Any = None, threshold: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """For new signatures: (is_duplicate [n] bool, nearest indexed id [n]) against an existing index."""
    res = index.search(feature_ids, feature_values, k=1)
    return res.scores[:, 0] >= threshold - 1e-6, res.ids[:, 0]
