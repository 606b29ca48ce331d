"""Held-out scores, a cut-off for a stated precision (issue 14, item 6), and scoring without given features."""

from __future__ import annotations

import numpy as np
import pytest

from qscope.classify import heldout_scores, precision_cutoff, without_features
from qscope.errors import InputError


def _mix(rng, n_pos, n_bg, prevalence, shift=2.5):
    pos = rng.normal(shift, 1, n_pos)
    lab = rng.random(n_bg) < prevalence
    bg = np.where(lab, rng.normal(shift, 1, n_bg), rng.normal(0, 1, n_bg))
    return pos, bg, lab


def test_cutoff_reaches_the_target_precision_on_average():
    rng = np.random.default_rng(0)
    true_prec, recall = [], []
    for _ in range(40):
        pos, bg, lab = _mix(rng, 20, 1500, 0.05)
        est = precision_cutoff(pos, bg, 0.8)
        kept = bg >= est.cutoff
        assert est.reached and est.est_precision >= 0.8
        assert abs(est.est_pass_fraction - kept.mean()) < 1e-9
        true_prec.append(lab[kept].mean())
        recall.append(kept[lab].mean())
    # measured on the real scores, not a formula: precision near the target, and far from keeping nothing
    assert 0.75 <= np.mean(true_prec) <= 1.0 and np.mean(recall) > 0.2


def test_prevalence_estimate_tracks_the_truth():
    rng = np.random.default_rng(1)
    for prevalence in (0.02, 0.2):
        est = [precision_cutoff(*_mix(rng, 200, 3000, prevalence)[:2], 0.8).est_prevalence for _ in range(10)]
        assert prevalence * 0.6 <= np.mean(est) <= prevalence * 1.2


def test_a_higher_target_keeps_fewer_rows():
    pos, bg, _ = _mix(np.random.default_rng(2), 40, 2000, 0.1)
    lo, hi = precision_cutoff(pos, bg, 0.6), precision_cutoff(pos, bg, 0.95)
    assert hi.cutoff >= lo.cutoff and hi.est_pass_fraction <= lo.est_pass_fraction


def test_seeds_like_everything_else_read_as_a_corpus_of_positives():
    # positive-unlabelled data cannot tell "the seeds are everywhere" from "the classifier is blind": the
    # estimate says the whole corpus is like the seeds, which the summary shows (est_prevalence ~1)
    rng = np.random.default_rng(3)
    est = precision_cutoff(rng.normal(0, 1, 20), rng.normal(0, 1, 500), 0.9)
    assert est.est_prevalence > 0.8


def test_bad_inputs():
    with pytest.raises(InputError):
        precision_cutoff([], [1.0], 0.8)
    with pytest.raises(InputError):
        precision_cutoff([1.0], [1.0], 1.5)


def _sigs(rng, n, block, d=512):
    fids, vals = [], []
    for _ in range(n):
        f = np.unique(np.r_[rng.choice(100, 10, replace=False), block + rng.choice(20, 6, replace=False)])
        fids.append(f)
        vals.append(rng.lognormal(0, 0.5, len(f)).astype(np.float32))
    return fids, vals


def test_heldout_scores_separate_seeds_from_background():
    rng = np.random.default_rng(0)
    sf, sv = _sigs(rng, 20, 200)
    bf, bv = _sigs(rng, 300, 300)
    s, b = heldout_scores(sf, sv, bf, bv, 512, folds=5)
    assert s.shape == (20,) and b.shape == (300,)
    assert np.median(s) > np.quantile(b, 0.95)


def test_without_features_drops_only_the_listed_latents():
    f, v = without_features([[1, 2, 3], [4, 5]], [[1.0, 2.0, 3.0], [4.0, 5.0]], [[2], []])
    assert [x.tolist() for x in f] == [[1, 3], [4, 5]] and [x.tolist() for x in v] == [[1.0, 3.0], [4.0, 5.0]]
    with pytest.raises(InputError):
        without_features([[1]], [[1.0]], [[1], [2]])
