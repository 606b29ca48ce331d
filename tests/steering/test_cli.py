"""`qscope steer` / `qscope sweep` on the default model with a saved SAE."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory, steer_sae):
    return str(steer_sae.save(tmp_path_factory.mktemp("sae") / "sae"))


PROMPT = "Tell me about your weekend."


def test_steer_json(sae_dir, cli, concept_feature):
    out = cli("steer", PROMPT, sae=sae_dir, feature=concept_feature, strength=1, max_new_tokens=5, baseline=True)
    assert out["intervention"]["edits"][0]["feature"] == concept_feature
    assert len(out["results"]) == 1 and "baseline" in out["results"][0]


def test_steer_bad_feature_is_a_clear_error(sae_dir, cli):
    assert cli("steer", "hi", sae=sae_dir, feature=999999, rc=2)["error"] == "UnknownFeatureError"


def test_sweep_json(sae_dir, cli, concept_feature):
    out = cli("sweep", PROMPT, sae=sae_dir, feature=concept_feature, strengths="0,1", max_new_tokens=5)
    assert [r["strength"] for r in out["rows"]] == [0.0, 1.0] and "best_strength" in out
