"""Localization scans layers with a residual probe, and with SAE features where an SAE exists."""

from __future__ import annotations


def test_probe_and_sae_localize_the_planted_concept(data, lm, planted_sae):
    from qscope.analysis import localize_concept

    result = localize_concept(
        lm, data.CODE[:8], data.PROSE[:8], layers=[1, 8], saes={15: planted_sae}, max_length=48, n_folds=4
    )
    assert [r.layer for r in result.layers] == [1, 8, 15]
    for r in result.layers:
        assert 0.0 <= r.probe_auroc <= 1.0
    at15 = result.layers[-1]
    assert at15.sae == planted_sae.sae_id
    assert at15.sae_heldout_auroc == 1.0  # feature chosen on training folds, scored on the held-out fold
    assert at15.top_features[0]["feature"] == data.PLANTED
    assert result.layers[0].sae is None  # no SAE at layer 1: probe only
    assert result.best.probe_auroc >= 0.9  # code vs prose is linearly obvious somewhere
    assert result.to_dict()["best_layer"] == result.best.layer
