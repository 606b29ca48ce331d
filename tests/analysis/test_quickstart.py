"""The quick start: SAEModel + FeatureExplorer + Intervention + steered generation, end to end."""

from __future__ import annotations

import pytest


@pytest.fixture
def explorer(data, lm, planted_sae, tmp_path, monkeypatch):
    from qscope.quickstart import FeatureExplorer, SAEModel

    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path))  # the background cache goes here
    return FeatureExplorer(SAEModel(lm, {15: planted_sae}), layer=15, background=data.PROSE, max_length=48)


def test_quickstart_flow_with_examples(data, explorer):
    from qscope.steering import Intervention

    features = explorer.discover_top_features(examples=data.CODE, top=3)
    assert features[0] == data.PLANTED and isinstance(features[0], int)
    assert features[0].label and features[0].auroc == 1.0
    iv = Intervention().activate(features[0], strength=0.8).suppress(features[1], strength=0.6)
    model = explorer.model
    plain = model.generate(["Explain quantum computing"], max_new_tokens=6)
    assert isinstance(plain, list) and len(plain) == 1  # a list in, a list out
    steered = model.generate("Explain quantum computing", intervention=iv, max_new_tokens=6)
    assert isinstance(steered, str) and steered


def test_discover_from_a_concept_phrase_uses_model_written_examples(explorer):
    features = explorer.discover_top_features("Python code", n_examples=2, top=5, max_new_tokens=12)
    pos, neg = explorer.last_examples
    assert len(pos) == 2 and len(neg) == 2 and pos != neg
    assert features and all(f.auroc is not None for f in features)


def test_inspect_and_dashboard_from_the_explorer(data, explorer, tmp_path):
    d = explorer.inspect(data.CODE[0], out=tmp_path / "x.html")
    assert (tmp_path / "x.html").exists() and data.PLANTED in [f["id"] for f in d["features"]]
    out = explorer.dashboard([data.PLANTED], tmp_path / "dash", texts=data.CODE + data.PROSE)
    assert (tmp_path / "dash" / f"feature-{data.PLANTED}.html").exists()
    assert out["features"][0]["label"]
