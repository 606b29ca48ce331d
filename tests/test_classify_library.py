"""Few-shot classification and mining on signatures."""

from __future__ import annotations

import numpy as np
import pytest

from qscope.classify import METHODS, SignatureClassifier, classify_corpus, mine_corpus
from qscope.errors import InputError

D = 2048


def corpus(n: int, seed: int, n_classes: int = 3, signal: int = 8):
    """Class c has `signal` latents from its own block of 20; all docs get 20 shared Zipfian latents."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 800 + 1)
    p /= p.sum()
    fids, vals, labels = [], [], []
    for _ in range(n):
        c = int(rng.integers(0, n_classes))
        f = np.unique(np.r_[800 + 20 * c + rng.choice(20, signal, replace=False), rng.choice(800, 20, p=p)])
        fids.append(f)
        vals.append(rng.lognormal(0, 0.5, len(f)).astype(np.float32))
        labels.append(f"c{c}")
    return fids, vals, np.array(labels)


def auroc(scores, positive):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(positive, scores)


@pytest.mark.parametrize("method", METHODS)
def test_multiclass_few_shot(method):
    f, v, y = corpus(600, 0)
    seeds = np.concatenate([np.flatnonzero(y == c)[:8] for c in ("c0", "c1", "c2")])
    out = classify_corpus([f[i] for i in seeds], [v[i] for i in seeds], y[seeds], f, v, D, method=method)
    assert out.classes == ["c0", "c1", "c2"] and out.scores.shape == (600, 3)
    assert (out.best() == y).mean() > 0.9
    for c, name in enumerate(out.classes):
        assert auroc(out.scores[:, c], y == name) > 0.95


@pytest.mark.parametrize("method", METHODS)
def test_mining_positive_seeds_only(method):
    f, v, y = corpus(1500, 1, n_classes=10)
    pos = np.flatnonzero(y == "c3")
    seeds, rest = pos[:8], np.setdiff1d(np.arange(1500), pos[:8])
    res = mine_corpus(
        [f[i] for i in seeds],
        [v[i] for i in seeds],
        [f[i] for i in rest],
        [v[i] for i in rest],
        D,
        top=50,
        method=method,
    )
    truth = y[rest] == "c3"
    assert auroc(res.scores, truth) > 0.95
    assert truth[res.order[:20]].mean() > 0.8
    assert len(res.order) == 50


def test_classifier_errors():
    f, v, y = corpus(20, 2)
    with pytest.raises(InputError, match="method"):
        SignatureClassifier(D, method="svm")
    with pytest.raises(InputError, match="labels"):
        SignatureClassifier(D).fit(f, v, y[:5])
    with pytest.raises(InputError, match="background"):
        SignatureClassifier(D).fit(f, v, ["x"] * 20)
    with pytest.raises(InputError, match="not fitted"):
        SignatureClassifier(D).decision_scores(f, v)
    with pytest.raises(InputError, match="corpus"):
        classify_corpus(f, v, y, [], [], D)
