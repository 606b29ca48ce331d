"""CompactStore: delta + escape coding round-trips, re-rank from the store, bytes per signature, format version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qscope.errors import InputError
from qscope.index import SignatureIndex, as_ragged
from qscope.index.lsh import rescore
from qscope.index.store import CompactStore


def edge_rows(d_sae: int):
    """Rows whose gaps hit every escape boundary: id 0, first id >= 255, gaps of exactly 255 / 256 / 510 / 511,
    huge gaps, the last id, a one-entry row and an empty one."""
    rows = [
        [0],
        [254],
        [255],
        [256],
        [0, 255, 510, 511, 1021, 1022],
        [3, 258, 514, 1024, 2048],
        [7, d_sae - 1],
        [d_sae - 1],
        [],
        list(range(40)),
        [0, d_sae // 2, d_sae - 2],
    ]
    rng = np.random.default_rng(0)
    rows += [np.sort(rng.choice(d_sae, size, replace=False)).tolist() for size in (1, 5, 64, 200)]
    vals = [rng.uniform(0.1, 5.0, len(r)).astype(np.float32) for r in rows]
    return rows, vals


@pytest.mark.parametrize(
    "d_sae,delta_bits", [(8192, 8), (8192, 16), (8192, None), (300_000, 8), (300_000, 16), (300_000, None)]
)
def test_round_trip_with_escapes(d_sae, delta_bits):
    rows, vals = edge_rows(d_sae)
    rng = np.random.default_rng(1)
    shuffled = [rng.permutation(len(r)) for r in rows]  # the store sorts each row by id itself
    r = as_ragged(
        [np.asarray(x, np.int64)[p] for x, p in zip(rows, shuffled)], [v[p] for v, p in zip(vals, shuffled)], d_sae
    )
    store = CompactStore(d_sae, value_bits=32, delta_bits=delta_bits)
    assert store.append(r).size == sum(map(len, rows))
    assert store.delta_bits in (8, 16) and store.indptr.dtype == np.uint32
    out = store.ragged()
    for i, (ids, v) in enumerate(zip(rows, vals)):
        got_ids, got_v = out.row(i)
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got_v, v)
    subset = np.array([5, 0, 8, 4, 4, 12])  # any order, repeats, an empty row
    sub = store.ragged(subset)
    for j, i in enumerate(subset):
        np.testing.assert_array_equal(sub.row(j)[0], rows[i])
    lens, ids, code = store.gather(subset)  # the re-rank's view: escapes kept, with code 0 and an in-range id
    assert lens.sum() == len(ids) == len(code) and ids.max() < d_sae
    real = code != 0
    np.testing.assert_array_equal(ids[real], np.concatenate([rows[i] for i in subset]))


def test_width_is_chosen_by_bytes():
    rng = np.random.default_rng(2)
    dense = as_ragged([rng.choice(8192, 64, replace=False) for _ in range(50)], [np.ones(64)] * 50, 8192)
    sparse = as_ragged([rng.choice(1 << 20, 64, replace=False) for _ in range(50)], [np.ones(64)] * 50, 1 << 20)
    a, b = CompactStore(8192), CompactStore(1 << 20)
    a.append(dense)
    b.append(sparse)
    assert (a.delta_bits, b.delta_bits) == (8, 16)
    assert len(a.delta) < 1.2 * 64 * 50 and len(b.delta) < 1.05 * 64 * 50  # escapes: ~14 % / only gaps >= 2^16


def test_repeats_are_summed_and_zeros_dropped():
    store = CompactStore(1000, value_bits=32)
    store.append(as_ragged([[5, 600, 5, 2]], [[1.0, 2.0, 3.0, 0.0]], 1000))
    ids, vals = store.ragged().row(0)
    np.testing.assert_array_equal(ids, [5, 600])
    np.testing.assert_array_equal(vals, [4.0, 2.0])


def test_one_long_row_among_short_ones():  # sorted without padding every row to the longest
    rng = np.random.default_rng(5)
    rows = [rng.choice(50_000, 5000, replace=False)] + [rng.choice(50_000, 3, replace=False) for _ in range(20)]
    ids = [np.r_[r, r[:2]] for r in rows]  # each row repeats its first two ids: they are summed
    vals = [np.ones(len(i), np.float32) for i in ids]
    store = CompactStore(50_000, value_bits=32)
    store.append(as_ragged(ids, vals, 50_000))
    out = store.ragged()
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(out.row(i)[0], np.sort(r))
        assert out.row(i)[1].sum() == len(r) + 2


def test_rescore_from_store_equals_exact_cosine():
    rng = np.random.default_rng(3)
    d, n = 4096, 300
    fids = [rng.choice(d, rng.integers(1, 80), replace=False) for _ in range(n)]
    vals = [rng.lognormal(0.5, 0.7, len(f)).astype(np.float32) for f in fids]
    index = SignatureIndex(d_sae=d)  # 8-bit codes
    index.add(range(n), fids, vals)
    q = index.vectorize(fids[:20], vals[:20])
    idf = index.vectorizer.idf
    norms = index._norms()
    factor = index.store.scale / norms
    cand = np.tile(np.arange(n), (20, 1))
    rows, scores = rescore(q.toarray() * idf, cand, index.store, factor, k=n)

    x = np.zeros((n, d))  # float64 truth from the unquantised input
    for i, (f, v) in enumerate(zip(fids, vals)):
        x[i, f] = v * idf[f]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = q.toarray() @ x.T
    got = np.full((20, n), np.nan)
    np.put_along_axis(got, rows, scores, 1)
    assert np.abs(got - truth).max() < 5e-3  # 8-bit codes: at most ~0.2 % of a row's largest weight per entry
    np.testing.assert_array_equal(rows[:, 0], np.arange(20))  # each query finds itself first
    exact = index.search_vectors(q, k=10, exact=True)  # the exact path reads the same store
    np.testing.assert_allclose(scores[:, :10], exact.scores, atol=1e-5)


def test_bytes_per_top64_signature_with_codes():
    rng = np.random.default_rng(4)
    n = 3000  # top-64 of d_sae 8192, latents spread uniformly (more escapes than Zipf-skewed real ones)
    fids = [rng.choice(8192, 64, replace=False) for _ in range(n)]
    vals = [rng.lognormal(1.0, 0.5, 64).astype(np.float32) for _ in range(n)]
    index = SignatureIndex(d_sae=8192, exact_threshold=1000)
    index.add(range(n), fids, vals)
    index.build_codes()
    assert index.code_bits == 768
    assert index.nbytes() / n <= 256, index.nbytes() / n


def test_old_format_is_refused(tmp_path):
    index = SignatureIndex(d_sae=100)
    index.add(["a"], [[1, 2]], [[1.0, 2.0]])
    index.save(tmp_path / "ix")
    cfg = json.loads((tmp_path / "ix" / "index.json").read_text())
    cfg["format_version"] = 1
    (tmp_path / "ix" / "index.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="index format 1.*rebuild"):
        SignatureIndex.load(tmp_path / "ix")
