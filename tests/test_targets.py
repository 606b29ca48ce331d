"""Target-feature selection recovers features planted in the seeds."""

from __future__ import annotations

import numpy as np
import pytest

from qscope.errors import InputError
from qscope.targets import select_target_features

D = 512


def docs(n: int, seed: int, planted: dict[int, float] | None = None):
    """Random signatures over a Zipfian vocabulary; `planted` = {feature: fraction of docs that get it}."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, D + 1)
    p /= p.sum()
    fids, vals = [], []
    for _ in range(n):
        f = set(rng.choice(D, 20, p=p).tolist())
        for feat, frac in (planted or {}).items():
            if rng.random() < frac:
                f.add(feat)
        f = np.array(sorted(f))
        fids.append(f)
        vals.append(rng.lognormal(0, 0.5, len(f)).astype(np.float32))
    return fids, vals


@pytest.mark.parametrize("method", ["logodds", "meandiff"])
def test_recovers_planted_features(method):
    sf, sv = docs(16, 0, planted={300: 1.0, 301: 0.75, 302: 0.1})
    bf, bv = docs(1000, 1, planted={300: 0.02, 301: 0.01})
    got = select_target_features(sf, sv, bf, bv, D, top_k=5, min_seed_coverage=0.25, method=method)
    ids = [t.feature_id for t in got]
    assert ids[:2] == [300, 301] or set(ids[:2]) == {300, 301}, got
    assert 302 not in ids  # in too few seeds
    top = got[0] if got[0].feature_id == 300 else got[1]
    assert top.seed_coverage == 1.0 and top.background_coverage < 0.05 and top.seed_mean > 0
    assert all(t.seed_coverage >= 0.25 for t in got)


def test_common_features_are_not_targets():
    sf, sv = docs(16, 2, planted={400: 1.0})
    bf, bv = docs(500, 3, planted={400: 1.0})  # present everywhere: nothing contrastive about it
    got = select_target_features(sf, sv, bf, bv, D, top_k=10, min_seed_coverage=0.5)
    assert 400 not in [t.feature_id for t in got][:3]


def test_errors():
    sf, sv = docs(4, 4)
    with pytest.raises(InputError, match="no seed"):
        select_target_features([], [], sf, sv, D)
    with pytest.raises(InputError, match="min_seed_coverage"):
        select_target_features(sf, sv, sf, sv, D, min_seed_coverage=1.5)
    with pytest.raises(InputError, match="method"):
        select_target_features(sf, sv, sf, sv, D, method="magic")
    with pytest.raises(InputError, match="no feature"):
        select_target_features([[1], [2], [3], [4]], [[1.0]] * 4, sf, sv, D, min_seed_coverage=0.9)
