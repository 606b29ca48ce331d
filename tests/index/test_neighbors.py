"""kNN labels and near-duplicate detection on the SignatureIndex."""

from __future__ import annotations

import numpy as np
import pytest

from qscope.errors import InputError
from qscope.index import SignatureIndex, dedup_keep_mask, duplicates_of, knn_classify, near_duplicates

D = 1024


def two_classes(n: int, seed: int):
    """Class a lives on latents 0..99, class b on 100..199; both share 8 random background latents."""
    rng = np.random.default_rng(seed)
    fids, vals, labels = [], [], []
    for i in range(n):
        c = i % 2
        f = np.unique(np.r_[rng.choice(np.arange(100) + 100 * c, 12, replace=False), rng.choice(np.arange(200, D), 8)])
        fids.append(f)
        vals.append(rng.lognormal(0, 0.5, len(f)).astype(np.float32))
        labels.append("ab"[c])
    return fids, vals, labels


def test_knn_classify_separable():
    f, v, y = two_classes(200, 0)
    qf, qv, qy = two_classes(60, 1)
    index = SignatureIndex(d_sae=D)
    index.add(range(200), f, v)
    out = knn_classify(index, y, qf, qv, k=7)
    assert out.classes == ["a", "b"]
    assert (out.labels == np.array(qy, object)).mean() == 1.0
    assert out.scores.shape == (60, 2) and np.allclose(out.scores.sum(1), 1.0)
    loo = knn_classify(index, y, f, v, k=7, exclude_self=True)  # leave-one-out on the indexed rows
    assert (loo.labels == np.array(y, object)).mean() == 1.0
    with pytest.raises(InputError, match="labels"):
        knn_classify(index, y[:10], qf, qv)


def test_near_duplicates_and_dedup():
    f, v, _ = two_classes(300, 2)
    rng = np.random.default_rng(3)
    # rows 300..309 are noisy copies of rows 0..9; row 310 copies row 300 (a copy of a copy)
    f2 = f + [f[i] for i in range(10)] + [f[0]]
    v2 = v + [v[i] * rng.lognormal(0, 0.05, len(v[i])).astype(np.float32) for i in range(10)] + [v[0] * 1.01]
    index = SignatureIndex(d_sae=D)
    index.add(range(len(f2)), f2, v2)
    pairs = near_duplicates(index, threshold=0.97)
    found = set(zip(pairs.a.tolist(), pairs.b.tolist()))
    assert {(i, 300 + i) for i in range(10)} <= found
    assert (0, 310) in found and (300, 310) in found
    assert all(b >= 300 for _, b in found), found  # no unrelated pair is that close
    keep = dedup_keep_mask(index, threshold=0.97)
    assert keep[:300].all() and not keep[300:].any()
    is_dup, nearest = duplicates_of(index, [f[5], np.array([1, 2, 3])], [v[5], np.ones(3, np.float32)], 0.97)
    assert is_dup.tolist() == [True, False] and nearest[0] in ("5", "305")
    with pytest.raises(InputError, match="threshold"):
        near_duplicates(index, threshold=1.5)
