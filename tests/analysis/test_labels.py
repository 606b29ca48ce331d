"""Labels: promoted tokens through the unembedding, top-activating tokens, held-out label scores."""

from __future__ import annotations

import pytest
import torch


def test_logit_effects_fold_the_final_norm_weight(data, lm, planted_sae):
    from qscope.analysis import logit_effects

    got = logit_effects(lm, planted_sae, [data.PLANTED, 3])
    gamma = lm.model.model.norm.weight
    want = (planted_sae.W_dec[[data.PLANTED, 3]] * gamma) @ lm.model.lm_head.weight.T
    torch.testing.assert_close(got, want.float())


def test_planted_feature_label_is_built_and_scored_on_held_out_texts(data, lm, planted_sae, planted_acts):
    from qscope.analysis import FeatureLabeler

    labeler = FeatureLabeler(lm, planted_sae, planted_acts)
    assert labeler.acts.n_docs + labeler.heldout.n_docs == planted_acts.n_docs
    lab = labeler.label(data.PLANTED)
    assert lab.text and lab.activating and len(lab.promoted) == 10 and len(lab.suppressed) == 10
    assert lab.promoted[0][1] >= lab.promoted[-1][1] and lab.suppressed[0][1] <= lab.suppressed[-1][1]
    s = lab.score
    assert s["heldout_tokens"] == labeler.heldout.n_tokens and s["heldout_firing"] > 0
    assert 0.0 <= s["balanced_accuracy"] <= 1.0 and s["precision"] > 0.5  # "=" / ":" tokens are in code


def test_label_score_is_chance_for_an_unrelated_label(data, planted_acts):
    from qscope.analysis import score_label

    s = score_label(planted_acts, data.PLANTED, ["zebra"])
    assert s["balanced_accuracy"] == 0.5 and s["recall"] == 0.0


def test_default_sae_clearest_features_have_specific_labels(data, lm, default_sae):
    """On the shipped SAE: the features whose top firings are dominated by one word get non-empty labels naming
    that word, and those labels predict where the feature fires on held-out texts far better than chance."""
    import numpy as np

    from qscope.analysis import CorpusActivations, FeatureLabeler, background_texts

    acts = CorpusActivations.collect(lm, default_sae, background_texts(24), max_length=64)
    labeler = FeatureLabeler(lm, default_sae, acts)
    clear = []
    for f in np.argsort(-np.diff(labeler.acts.csc.indptr))[:400]:  # candidates: fire often enough to judge
        act = labeler.activating_tokens(int(f))
        if act and act[0][1] >= 10 and act[0][1] > 0.6 * sum(w for _, w in act) and act[0][0].isalpha():
            clear.append(int(f))
        if len(clear) == 5:
            break
    if len(clear) < 3:
        pytest.skip(f"the shipped SAE has too few single-token features on this sample ({clear})")
    labels = [labeler.label(f) for f in clear]
    for lab in labels:
        assert lab.text and not lab.text.startswith("(silent")
        assert lab.activating[0][0] in lab.text
    # specific: the label's word predicts held-out firing (0.5 = chance; measured 0.78-0.99 on the interim SAE)
    assert all(lab.score["balanced_accuracy"] > 0.65 for lab in labels)
    assert all(lab.score["precision"] > 0.3 for lab in labels)


def test_lm_written_label_is_scored_like_the_automatic_one(data, lm, planted_sae, planted_acts):
    from qscope.analysis import FeatureLabeler

    lab = FeatureLabeler(lm, planted_sae, planted_acts).lm_label(data.PLANTED)
    assert isinstance(lab.lm_text, str) and lab.lm_text  # greedy, a few words; quality is the 135M model's
    assert set(lab.lm_score) >= {"balanced_accuracy", "precision", "recall"}
