"""Discovery ranks features by how well pooled activations separate positives from negatives."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_auroc_and_effect_match_reference():
    from sklearn.metrics import roc_auc_score

    from qscope.analysis import score_features

    rng = np.random.default_rng(0)
    pos = np.maximum(rng.normal(1.0, 1.0, (30, 6)), 0)
    neg = np.maximum(rng.normal(0.2, 1.0, (40, 6)), 0)
    pos[:, 3] += 3.0  # the clear winner
    scores = score_features(pos, neg, top=6, direction="both")
    assert scores[0].feature == 3
    y = np.r_[np.ones(30), np.zeros(40)]
    for s in scores:
        col = np.r_[pos[:, s.feature], neg[:, s.feature]]
        assert s.auroc == pytest.approx(roc_auc_score(y, col))
        sd = np.sqrt((pos[:, s.feature].var() + neg[:, s.feature].var()) / 2)
        assert s.effect_size == pytest.approx((pos[:, s.feature].mean() - neg[:, s.feature].mean()) / sd)


def test_positive_direction_drops_features_of_the_negatives():
    from qscope.analysis import score_features

    pos = np.array([[1.0, 0.0], [2.0, 0.0]])
    neg = np.array([[0.0, 5.0], [0.0, 4.0]])
    assert [s.feature for s in score_features(pos, neg)] == [0]
    assert [s.feature for s in score_features(pos, neg, direction="negative")] == [1]


def test_discovery_recovers_planted_feature(data, lm, planted_sae):
    from qscope.analysis import discover_features

    result = discover_features(lm, planted_sae, data.HELD_OUT[0], data.HELD_OUT[1], max_length=48, top=5)
    best = result.features[0]
    assert best.feature == data.PLANTED
    assert best.auroc == 1.0 and best.frac_pos == 1.0 and best.frac_neg == 0.0
    # the planted latent wins by margin, not by tie-breaking: its effect size dwarfs the runner-up's
    assert best.effect_size > 3 * result.features[1].effect_size
    assert result.to_dict()["features"][0]["feature"] == data.PLANTED


def test_discover_cli_json(data, lm, planted_sae, tmp_path, monkeypatch, cli):
    from qscope.models import LanguageModel

    monkeypatch.setattr(LanguageModel, "load", classmethod(lambda cls, *a, **k: lm))  # reuse the session model
    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path / "home"))
    sae_dir = planted_sae.save(tmp_path / "sae")
    pos, neg = tmp_path / "pos.jsonl", tmp_path / "neg.txt"
    pos.write_text("\n".join(json.dumps({"text": t}) for t in data.HELD_OUT[0]))
    neg.write_text("\n".join(data.HELD_OUT[1]))
    out = cli("discover", pos=pos, neg=neg, sae=sae_dir, top=3, max_length=48)
    assert out["features"][0]["feature"] == data.PLANTED
    assert out["n_pos"] == len(data.HELD_OUT[0]) and out["n_neg"] == len(data.HELD_OUT[1])
    assert out["features"][0]["label"]  # labelled from the negatives' sample


def test_discover_cli_rejects_missing_input(capsys):
    from qscope.cli import main

    assert main(["discover", "--pos", "/nonexistent.jsonl", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] in ("InputError", "SAELoadError")
