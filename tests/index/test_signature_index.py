"""SignatureIndex: exact path vs brute force, FAISS-partitioned path vs exact, persistence, incremental add, errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from qscope.errors import InputError
from qscope.index import SignatureIndex
from qscope.signatures import SignatureMeta, signature_table, write_parquet_atomic

D = 2048


def clustered(n: int, seed: int, n_topics: int = 40, per_doc: int = 32):
    """Sparse signatures with topic structure (as real ones have): 24 topic latents + 8 random ones per doc."""
    rng = np.random.default_rng(seed)
    topics = np.random.default_rng(99).choice(D, (n_topics, 80))
    fids, vals = [], []
    for t in rng.integers(0, n_topics, n):
        f = np.unique(np.r_[rng.choice(topics[t], 24, replace=False), rng.choice(D, per_doc - 24)])
        fids.append(f.astype(np.int32))
        vals.append(rng.lognormal(0.5, 0.5, len(f)).astype(np.float32))
    return fids, vals


def brute_force(index_f, index_v, q_f, q_v, idf, k):
    def dense(fs, vs):
        x = np.zeros((len(fs), D))
        for i, (f, v) in enumerate(zip(fs, vs)):
            np.add.at(x[i], f, v)
        x *= idf
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    s = dense(q_f, q_v) @ dense(index_f, index_v).T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, 1)


def meta(sae="test/sae-a"):
    return SignatureMeta(model="smollm2-135m", sae=sae, layer=15, pooling="max", top_n=32, d_sae=D)


def test_exact_path_equals_brute_force():
    f, v = clustered(800, 0)
    qf, qv = clustered(30, 1)
    index = SignatureIndex(d_sae=D, value_bits=32)
    index.add([f"d{i}" for i in range(len(f))], f, v)
    res = index.search(qf, qv, k=10)
    order, scores = brute_force(f, v, qf, qv, index.vectorizer.idf, 10)
    np.testing.assert_allclose(res.scores, scores, atol=1e-5)
    assert (res.positions == order).mean() > 0.99  # equal up to exact ties
    assert res.ids[0, 0] == f"d{res.positions[0, 0]}"


def test_compact_codes_stay_close_to_float():
    f, v = clustered(500, 0)
    qf, qv = clustered(20, 1)
    exact = SignatureIndex(d_sae=D, value_bits=32)
    small = SignatureIndex(d_sae=D)  # 8-bit codes
    for ix in (exact, small):
        ix.add(range(len(f)), f, v)
    a, b = exact.search(qf, qv, k=10), small.search(qf, qv, k=10)
    assert np.abs(a.scores - b.scores).max() < 5e-3
    assert small.store.nbytes() / len(small) < 4 * 32 + 16


def test_approximate_recall_vs_exact():
    f, v = clustered(6000, 2)
    qf, qv = clustered(200, 3)
    index = SignatureIndex(d_sae=D, exact_threshold=1000, rerank=50)
    index.add(range(len(f)), f, v)
    assert index.uses_codes
    exact = index.search(qf, qv, k=10, exact=True)
    approx = index.search(qf, qv, k=10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.positions, exact.positions)])
    assert recall >= 0.9, recall
    hit = approx.positions >= 0  # re-ranked scores are the exact cosines
    assert np.all(approx.scores[:, 0] <= exact.scores[:, 0] + 1e-6)
    full = index.search(qf, qv, k=10, rerank=len(f))  # every row re-ranked: must equal the exact answer
    np.testing.assert_allclose(full.scores, exact.scores, atol=1e-6)
    assert hit.all()


def test_incremental_add_equals_building_at_once():
    f, v = clustered(900, 4)
    qf, qv = clustered(25, 5)
    once = SignatureIndex(d_sae=D)
    once.add(range(900), f, v)
    parts = SignatureIndex(d_sae=D)
    for s in range(0, 900, 300):
        parts.add(range(s, s + 300), f[s : s + 300], v[s : s + 300])
    np.testing.assert_array_equal(once.vectorizer.idf, parts.vectorizer.idf)
    a, b = once.search(qf, qv, k=10), parts.search(qf, qv, k=10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_add_after_codes_is_searchable():
    f, v = clustered(3000, 6)
    index = SignatureIndex(d_sae=D, exact_threshold=500)
    index.add([f"a{i}" for i in range(2500)], f[:2500], v[:2500])
    index.search(f[:2], v[:2], k=3)  # builds the codes
    index.add([f"b{i}" for i in range(500)], f[2500:], v[2500:])
    res = index.search(f[2990:], v[2990:], k=1)
    assert list(res.ids[:, 0]) == [f"b{i}" for i in range(490, 500)]
    assert np.allclose(res.scores[:, 0], 1.0, atol=5e-3)


def test_save_load_round_trip(tmp_path):
    f, v = clustered(3000, 7)
    qf, qv = clustered(40, 8)
    for threshold in (10_000, 1000):  # exact and SimHash paths
        index = SignatureIndex(meta(), exact_threshold=threshold)
        index.add([f"d{i}" for i in range(len(f))], f, v)
        before = index.search(qf, qv, k=10)
        index.save(tmp_path / f"ix{threshold}")
        loaded = SignatureIndex.load(tmp_path / f"ix{threshold}", expect=meta())
        after = loaded.search(qf, qv, k=10)
        np.testing.assert_array_equal(before.ids, after.ids)
        np.testing.assert_allclose(before.scores, after.scores, atol=1e-6)
        assert list(loaded.ids) == [f"d{i}" for i in range(len(f))]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_meta_mismatch_raises(tmp_path):
    f, v = clustered(50, 9)
    index = SignatureIndex(meta("test/sae-a"))
    index.add(range(50), f, v)
    index.save(tmp_path / "ix")
    with pytest.raises(InputError, match="sae"):
        SignatureIndex.load(tmp_path / "ix", expect=meta("test/sae-b"))
    table = signature_table(
        [str(i) for i in range(3)], list(zip(f[:3], v[:3])), [5] * 3, [False] * 3, meta("test/sae-b")
    )
    with pytest.raises(InputError, match="sae"):
        index.add_table(table)


def test_from_parquet(tmp_path):
    f, v = clustered(200, 10)
    table = signature_table([f"p{i}" for i in range(200)], list(zip(f, v)), [10] * 200, [False] * 200, meta())
    write_parquet_atomic(table, tmp_path / "sig.parquet")
    index = SignatureIndex.from_parquet(tmp_path / "sig.parquet")
    assert index.meta == meta() and len(index) == 200
    res = index.search(f[:5], v[:5], k=1)
    assert list(res.ids[:, 0]) == [f"p{i}" for i in range(5)]
    # the Parquet list columns themselves are accepted as queries
    res2 = index.search(table.column("feature_ids").slice(0, 5), table.column("feature_values").slice(0, 5), k=1)
    np.testing.assert_array_equal(res.ids, res2.ids)


def test_bad_input():
    index = SignatureIndex(d_sae=D)
    with pytest.raises(InputError, match="empty"):
        index.search([[1]], [[1.0]])
    with pytest.raises(InputError, match="range"):
        index.add(["a"], [[D + 5]], [[1.0]])
    with pytest.raises(InputError, match="values"):
        index.add(["a"], [[1, 2]], [[1.0]])
    with pytest.raises(InputError, match=">= 0"):
        index.add(["a"], [[1]], [[-1.0]])
    with pytest.raises(InputError, match="ids"):
        index.add(["a", "b"], [[1]], [[1.0]])
    with pytest.raises(InputError, match="NaN"):
        index.add(["a"], [[1]], [[float("nan")]])
    with pytest.raises(InputError, match="not a qscope"):
        SignatureIndex.load("/nonexistent/index")
    with pytest.raises(InputError, match="d_sae"):
        SignatureIndex()
    index.add(["a", "empty"], [[1, 2], []], [[1.0, 2.0], []])  # an empty signature is allowed, never matches
    res = index.search([[1, 2]], [[1.0, 2.0]], k=5)
    assert res.ids[0, 0] == "a" and res.positions.shape == (1, 5) and (res.positions[0, 2:] == -1).all()


def test_arrow_and_list_inputs_agree():
    f, v = clustered(100, 11)
    a = SignatureIndex(d_sae=D)
    a.add(range(100), f, v)
    b = SignatureIndex(d_sae=D)
    b.add(
        range(100),
        pa.array([x.tolist() for x in f], pa.list_(pa.int32())),
        pa.array([x.tolist() for x in v], pa.list_(pa.float32())),
    )
    np.testing.assert_array_equal(a.store.code, b.store.code)
