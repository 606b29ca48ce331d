"""`qscope steer` / `qscope sweep` on the default model with a saved SAE."""

from __future__ import annotations

import json

import pytest

from qscope.cli import main


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory, steer_sae):
    return str(steer_sae.save(tmp_path_factory.mktemp("sae") / "sae"))


def test_steer_json(sae_dir, capsys, concept_feature):
    rc = main(
        [
            "steer",
            "Tell me about your weekend.",
            "--sae",
            sae_dir,
            "--feature",
            str(concept_feature),
            "--strength",
            "1",
            "--max-new-tokens",
            "5",
            "--baseline",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["intervention"]["edits"][0]["feature"] == concept_feature
    assert len(out["results"]) == 1 and "baseline" in out["results"][0]


def test_steer_bad_feature_is_a_clear_error(sae_dir, capsys):
    rc = main(["steer", "hi", "--sae", sae_dir, "--feature", "999999", "--json"])
    assert rc == 2
    assert json.loads(capsys.readouterr().out)["error"] == "UnknownFeatureError"


def test_sweep_json(sae_dir, capsys, concept_feature):
    rc = main(
        [
            "sweep",
            "Tell me about your weekend.",
            "--sae",
            sae_dir,
            "--feature",
            str(concept_feature),
            "--strengths",
            "0,1",
            "--max-new-tokens",
            "5",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["strength"] for r in out["rows"]] == [0.0, 1.0] and "best_strength" in out
