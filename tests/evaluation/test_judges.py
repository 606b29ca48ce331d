"""Judges trained on labelled text (issue 14): TF-IDF+LR, hidden-state probe, seed classifier as a judge."""

from __future__ import annotations

import numpy as np
import pytest

from qscope.errors import InputError
from qscope.evaluation.judges import HiddenStateJudge, SignatureJudge, TfidfJudge, fpr_threshold, judge_panel

RADIO = [
    "Amateur radio logging program for ham operators.",
    "APRS client to track packet radio stations.",
    "Morse code trainer for ham radio licence exams.",
    "Software defined radio receiver for shortwave bands.",
    "Antenna modelling tool for amateur radio antennas.",
    "Digital modes (PSK31, RTTY) for ham radio.",
    "Packet radio AX.25 utilities for amateur stations.",
    "Satellite tracking for amateur radio operators.",
    "Contest logger for ham radio field day.",
    "Remote control of radio transceivers over the network.",
] * 2
OTHER = [
    "A library for parsing JSON documents.",
    "Puzzle game with colourful blocks.",
    "Font family for print.",
    "Command line tool to compress files.",
    "Web server with HTTP/2 support.",
    "Spreadsheet application.",
    "Photo editing program with layers.",
    "Database driver for PostgreSQL.",
    "Text editor for programmers.",
    "Music player with playlists.",
] * 2


def test_tfidf_judge_learns_and_validates_itself():
    j = TfidfJudge().fit(RADIO + OTHER, [1] * len(RADIO) + [0] * len(OTHER))
    v = j.validation
    assert v["n_pos"] == 20 and v["n_neg"] == 20 and 0.0 <= v["fpr"] <= 1.0 and v["auroc"] > 0.8
    p = j.proba(["A ham radio logbook for amateur operators.", "A puzzle game.", ""])
    assert p[0] > 0.5 > p[1] and p[2] == 0.0  # an empty text is never on target
    assert j.on_target(["ham radio antenna"]).tolist() == [True]


def test_judge_input_errors():
    with pytest.raises(InputError):
        TfidfJudge().fit(["a", "b"], [1, 1])
    with pytest.raises(InputError):
        TfidfJudge().fit(["a"], [1, 0])
    with pytest.raises(InputError):
        TfidfJudge().proba(["not fitted"])


def test_hidden_state_judge_caches_embeddings(lm, tmp_path):
    texts, labels = RADIO[:10] + OTHER[:10], [1] * 10 + [0] * 10
    j = HiddenStateJudge(lm=lm, layer=4, max_length=16, cache_dir=tmp_path).fit(texts, labels, folds=0)
    assert j.proba(["Ham radio transceiver control."])[0] > 0.5
    assert list(tmp_path.glob("*.npz"))  # embeddings on disk: a second judge reads them instead of the LM
    j2 = HiddenStateJudge(lm=None, model="unused", layer=4, max_length=16, cache_dir=tmp_path)
    j2.cache.path = j.cache.path
    assert np.allclose(j2.embed(texts[:3]), j.embed(texts[:3]))


def test_signature_judge_drops_excluded_features(lm, random_sae_factory):
    sae = random_sae_factory(d_sae=256, k=8, hook_layer=4, seed=1)
    j = SignatureJudge(lm, sae, max_length=16).fit(RADIO[:8] + OTHER[:8], [1] * 8 + [0] * 8, folds=0)
    fids, _ = j.signatures(["Ham radio logbook."])
    base = j.proba(["Ham radio logbook."])[0]
    j.exclude_features = [int(f) for f in fids[0]]
    assert j.proba(["Ham radio logbook."])[0] != pytest.approx(base)  # nothing left of the signature to read


def test_judge_panel():
    j = TfidfJudge().fit(RADIO + OTHER, [1] * len(RADIO) + [0] * len(OTHER))
    out = judge_panel(["ham radio APRS", "puzzle game"], [j])
    assert out["tfidf"].tolist() == [True, False] and out["all"].tolist() == [True, False]


def test_fpr_threshold_lets_at_most_that_share_of_negatives_pass():
    neg = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 0.05])
    for fpr in (0.05, 0.1, 0.25, 0.5):
        t = fpr_threshold(neg, fpr)
        assert (neg >= t).mean() <= fpr
        assert (neg >= np.nextafter(t, -np.inf)).mean() > fpr  # the lowest such threshold: one step down, more pass
    assert fpr_threshold(neg, 0.05) > 0.9  # 10 negatives: 5% lets none pass
    # with positives: halfway between that bound and the lowest positive it catches (a margin for unseen text)
    assert fpr_threshold(neg, 0.1, np.array([0.95, 0.97, 0.3])) == pytest.approx((np.nextafter(0.8, 1) + 0.95) / 2)
    assert fpr_threshold(neg, 0.1, np.array([0.5])) == fpr_threshold(neg, 0.1)  # no positive above: the bound


def test_judge_threshold_set_for_a_false_positive_rate():
    rng = np.random.default_rng(0)
    texts = RADIO + OTHER + [f"{a} {b}" for a, b in zip(rng.permutation(RADIO), rng.permutation(OTHER))]
    labels = [1] * len(RADIO) + [0] * len(OTHER) + [0] * len(RADIO)  # mixed texts: hard negatives
    j = TfidfJudge().fit(texts, labels, target_fpr=0.1)
    assert j.validation["fpr"] <= 0.1 and j.validation["threshold"] == pytest.approx(j.threshold, abs=1e-4)
    assert j.threshold != 0.5
    assert TfidfJudge().fit(texts, labels).threshold == 0.5  # the default stays 0.5
    j.fit(texts, labels)
    assert j.threshold == 0.5  # a refit without target_fpr resets it
    with pytest.raises(InputError, match="target_fpr"):
        TfidfJudge().fit(texts, labels, target_fpr=1.5)
    with pytest.raises(InputError, match="cross-validation"):
        TfidfJudge().fit(texts, labels, folds=0, target_fpr=0.1)
