"""The SAE's own model and layer are the default, decided in one place (`qscope.models.resolve_sae_and_model`):
every entry point picks the same and fails with the same message."""

from __future__ import annotations

import argparse

import pytest

from qscope.errors import InputError
from qscope.models import resolve_sae_and_model


def _entry_points(sae_dir: str, model: str | None = None):
    """Each way a user reaches the rule, as a callable that raises before any model is loaded."""
    from qscope.cli.common import load_model_and_sae as cli_load
    from qscope.operators.base import ModelSpec
    from qscope.operators.base import load_model_and_sae as operator_load
    from qscope.operators.generate import _vllm_sources
    from qscope.pipelines.common import signature_meta
    from qscope.pipelines.config import ExpandConfig
    from qscope.quickstart import SAEModel

    cfg = ExpandConfig.from_dict({"model": {"sae": sae_dir, "model": model}})
    args = argparse.Namespace(sae=sae_dir, model=model, layer=None, max_length=16, allow_model_mismatch=False)
    spec = ModelSpec(model=model, sae=sae_dir)
    return {
        "cli": lambda: cli_load(args),
        "quickstart": lambda: SAEModel.from_pretrained(sae=sae_dir, model=model),
        "operator": lambda: operator_load(spec),
        "vllm actor": lambda: _vllm_sources(spec),
        "pipeline driver": lambda: signature_meta(cfg.model, cfg.signatures),
    }


def _messages(sae_dir, model=None) -> dict[str, str]:
    out = {}
    for name, call in _entry_points(str(sae_dir), model).items():
        with pytest.raises(InputError) as err:
            call()
        out[name] = str(err.value)
    return out


def test_a_missing_layer_is_the_same_error_everywhere(random_sae_factory, tmp_path):
    sae = random_sae_factory(hook_layer=None)
    sae.cfg.sae_id = "test/no-layer"
    sae.save(tmp_path / "sae")
    messages = _messages(tmp_path / "sae")
    assert len(set(messages.values())) == 1, messages
    assert "test/no-layer does not record its hook layer" in messages["cli"] and "--layer" in messages["cli"]


def test_a_model_mismatch_is_the_same_error_everywhere(random_sae_factory, tmp_path):
    sae = random_sae_factory()
    sae.save(tmp_path / "sae")
    messages = _messages(tmp_path / "sae", model="someorg/other-model")
    assert len(set(messages.values())) == 1, messages
    assert "trained on model 'smollm2-135m'" in messages["operator"]


def test_defaults_come_from_the_sae(random_sae_factory, tmp_path):
    sae = random_sae_factory(hook_layer=7)
    sae.cfg.model_name = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the hub id of the embedded model: loads offline
    sae.save(tmp_path / "sae")
    chosen = resolve_sae_and_model(tmp_path / "sae")
    assert (chosen.model, chosen.layer, chosen.sae_spec) == ("smollm2-135m", 7, str(tmp_path / "sae"))
    assert resolve_sae_and_model(tmp_path / "sae", layer=3).layer == 3
    shipped = resolve_sae_and_model()  # no SAE named: the default model's shipped SAE
    assert (shipped.sae_spec, shipped.model, shipped.layer) == ("smollm2-135m-l15", "smollm2-135m", 15)
