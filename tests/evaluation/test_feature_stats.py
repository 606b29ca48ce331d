"""Feature statistics: exact on synthetic codes, consistent on the real LM, saved and loaded next to an SAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qscope.errors import InputError, SAELoadError
from qscope.evaluation import FEATURE_STATS_FILE, FeatureStats, compute_feature_stats, load_feature_stats
from qscope.evaluation.feature_stats import stats_from_codes
from qscope.evaluation.texts import eval_token_mask

LEVELS = (0.0, 0.25, 0.5, 0.9, 0.99, 1.0)


def _synthetic(seed=0, n_tokens=500, m=6, d_sae=40):
    rng = np.random.default_rng(seed)
    # Padded codes [n_tokens, m] with distinct features per row; some slots are zero padding.
    idx = np.stack([rng.choice(d_sae - 5, m, replace=False) for _ in range(n_tokens)])  # last 5 never used
    val = rng.gamma(2.0, 1.5, size=(n_tokens, m)).astype(np.float32)
    val[rng.random((n_tokens, m)) < 0.3] = 0.0
    return idx, val, d_sae, n_tokens


def test_exact_statistics_on_synthetic_codes():
    idx, val, d_sae, n = _synthetic()
    stats = stats_from_codes(idx, val, d_sae, n, quantile_levels=LEVELS)
    for f in range(d_sae):
        active = val[(idx == f) & (val > 0)]
        assert stats.count[f] == active.size
        assert stats.density[f] == pytest.approx(active.size / n)
        if active.size:
            assert stats.max_activation[f] == active.max()
            assert stats.mean_activation[f] == pytest.approx(active.mean(), rel=1e-6)
            np.testing.assert_allclose(stats.quantiles[f], np.quantile(active.astype(np.float64), LEVELS), rtol=1e-6)
        else:
            assert stats.max_activation[f] == 0 and stats.mean_activation[f] == 0
            assert not stats.quantiles[f].any()
    assert stats.dead[-5:].all() and not stats.dead[:-5].any()


def test_tiny_hand_computed_example():
    # Feature 0 fires 4 times out of 5 tokens with 1, 2, 3, 10; feature 1 once with 5; feature 2 never.
    idx = np.array([0, 0, 0, 0, 1])
    val = np.array([1.0, 2.0, 3.0, 10.0, 5.0], np.float32)
    tok = np.array([0, 1, 2, 3, 4])
    s = stats_from_codes(idx, val, d_sae=3, n_tokens=5, quantile_levels=(0.5, 0.9, 0.99), top_k=2, token_index=tok)
    np.testing.assert_allclose(s.density, [0.8, 0.2, 0.0])
    np.testing.assert_allclose(s.max_activation, [10.0, 5.0, 0.0])
    np.testing.assert_allclose(s.mean_activation, [4.0, 5.0, 0.0])
    # Quantiles with linear interpolation on [1, 2, 3, 10]: 0.5 -> 2.5, 0.9 -> 3 + 0.7*7 = 7.9, 0.99 -> 9.79.
    np.testing.assert_allclose(s.quantiles[0], [2.5, 7.9, 9.79], rtol=1e-6)
    np.testing.assert_allclose(s.quantiles[1], [5.0, 5.0, 5.0])
    # Strength unit = the 0.99 quantile; the dead feature gets the median unit of live ones (9.79, 5) = 7.395.
    np.testing.assert_allclose(s.strength_unit, [9.79, 5.0, 7.395], rtol=1e-6)
    np.testing.assert_array_equal(s.top_token_index, [[3, 2], [4, -1], [-1, -1]])
    np.testing.assert_allclose(s.top_values, [[10.0, 3.0], [5.0, 0.0], [0.0, 0.0]])


def test_bad_codes():
    with pytest.raises(InputError, match="out of range"):
        stats_from_codes(np.array([3]), np.array([1.0]), d_sae=3, n_tokens=1)
    with pytest.raises(InputError):
        stats_from_codes(np.array([0]), np.array([1.0]), d_sae=3, n_tokens=0)


def test_save_load_roundtrip(tmp_path):
    idx, val, d_sae, n = _synthetic(seed=1)
    stats = stats_from_codes(torch.from_numpy(idx), torch.from_numpy(val), d_sae, n, top_k=3)
    stats.metadata = {"sae": "x", "layer": 3}
    file = stats.save(tmp_path)
    assert file == tmp_path / FEATURE_STATS_FILE
    assert [p.name for p in tmp_path.iterdir()] == [FEATURE_STATS_FILE]  # no temp leftovers
    for loaded in (load_feature_stats(tmp_path), load_feature_stats(file), FeatureStats.load(file)):
        assert loaded.n_tokens == n and loaded.metadata == {"sae": "x", "layer": 3}
        assert loaded.quantile_levels == stats.quantile_levels
        for name in (
            "count",
            "density",
            "max_activation",
            "mean_activation",
            "quantiles",
            "top_token_index",
            "top_values",
            "strength_unit",
        ):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(stats, name))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAELoadError, match="--write-stats"):
        load_feature_stats(tmp_path / "empty")
    with pytest.raises(SAELoadError, match="not a shipped SAE id"):
        load_feature_stats(tmp_path / "nothing-here")


def test_on_real_lm_matches_direct_encoding(lm, demo_texts, planted):
    sae = planted.random_topk(lm.d_model, d_sae=256, k=8)
    stats = compute_feature_stats(lm, sae, demo_texts, n_tokens=10_000, top_k=4)
    res = lm.residuals(demo_texts, [planted.layer])
    x = res.hidden[planted.layer][eval_token_mask(res.input_ids, res.attention_mask, set(lm.tokenizer.all_special_ids))]
    with torch.no_grad():
        dense = sae.encode_dense(x)
    assert stats.n_tokens == x.shape[0]
    np.testing.assert_array_equal(stats.count, (dense > 0).sum(0).numpy())
    np.testing.assert_allclose(stats.max_activation, dense.max(0).values.numpy(), rtol=1e-5)
    assert stats.count.sum() == pytest.approx(float((dense > 0).sum()))
    assert stats.metadata["sae"] == sae.sae_id and stats.metadata["layer"] == planted.layer
    live = stats.count > 0
    assert (stats.quantiles[live, -1] <= stats.max_activation[live] + 1e-6).all()
    assert (stats.top_values[live, 0] == stats.max_activation[live]).all()


def test_from_activation_cache_equals_direct_encoding(planted, tmp_path):
    from qscope.evaluation import feature_stats_from_cache
    from qscope.training.cache import write_activation_cache

    sae = planted.random_topk(32, d_sae=128, k=4)
    x = np.random.default_rng(0).normal(size=(1000, 32)).astype(np.float16)
    cache = write_activation_cache(tmp_path / "cache", {planted.layer: x}, shard_tokens=300)  # 4 shards
    stats = feature_stats_from_cache(sae, cache, n_tokens=700, batch_tokens=128)
    with torch.no_grad():
        dense = sae.encode_dense(torch.from_numpy(x[:700].astype(np.float32)))
    assert stats.n_tokens == 700 and stats.metadata["layer"] == planted.layer
    np.testing.assert_array_equal(stats.count, (dense > 0).sum(0).numpy())
    np.testing.assert_allclose(stats.max_activation, dense.max(0).values.numpy(), rtol=1e-6)
    with pytest.raises(InputError, match="d_in"):
        feature_stats_from_cache(planted.random_topk(16, d_sae=64, k=4), cache)
