"""The second embedded model on real Qwen weights: loading, hook points, model <-> SAE defaults."""

from __future__ import annotations

import json

import pytest
import torch

from qscope.errors import ModelLoadError
from qscope.models import DEFAULT_MODEL, EMBEDDED_MODELS, model_for_sae
from qscope.models.resolve import embedded_model_dir
from qscope.sae import DEFAULT_SAE_ID, default_sae_id

QWEN, QWEN_SAE, LAYER = "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-l12", 12


def test_smollm2_stays_the_default():
    assert DEFAULT_MODEL == "smollm2-135m" and DEFAULT_SAE_ID == "smollm2-135m-l15"
    assert default_sae_id() == DEFAULT_SAE_ID and default_sae_id("smollm2-135m") == DEFAULT_SAE_ID


def test_model_selects_its_shipped_sae_under_any_name():
    assert default_sae_id(QWEN) == QWEN_SAE
    assert default_sae_id(EMBEDDED_MODELS[QWEN].hf_name) == QWEN_SAE  # the hub id of the embedded copy
    # no shipped SAE: the default one, which the model check then refuses with its explanation
    assert default_sae_id("org/other") == DEFAULT_SAE_ID


def test_missing_setup_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="make qwen"):
        embedded_model_dir(QWEN)


def test_qwen_sae_reads_its_own_model_by_default(qwen_sae):
    assert qwen_sae.cfg.model_name == QWEN and qwen_sae.cfg.hook_layer == LAYER and qwen_sae.d_in == 896
    assert model_for_sae(None, qwen_sae) == QWEN


def test_loads_offline_as_plain_qwen2_safetensors(qwen_lm):
    assert (qwen_lm.n_layers, qwen_lm.d_model) == (24, 896)
    config = json.loads((embedded_model_dir(QWEN) / "config.json").read_text())
    # vLLM needs the architecture; the dequantized weights must not look GGUF-quantized
    assert config["architectures"] == ["Qwen2ForCausalLM"] and "quantization_config" not in config
    assert config["_name_or_path"] == EMBEDDED_MODELS[QWEN].hf_name


def test_truncated_forward_equals_full_hidden_states(qwen_lm):
    texts = ["def add(a, b):\n    return a + b", "Qwen 是一个大型语言模型。"]
    full = qwen_lm.full_hidden_states(texts)
    res = qwen_lm.residuals(texts, layers=[3, LAYER])
    mask = res.attention_mask.bool()
    for layer in (3, LAYER):
        torch.testing.assert_close(res.hidden[layer][mask], full[layer + 1][mask], rtol=1e-4, atol=1e-4)


def test_it_is_a_code_model(qwen_lm):
    """Greedy output for a coding request is Python that compiles (the GGUF really is the coder model)."""
    from qscope.generation import make_engine

    engine = make_engine("hf", lm=qwen_lm, batch_size=1)
    text = engine.generate(["Write a Python function is_even(n). Reply with code only."], max_new_tokens=40)[0].text
    assert "def is_even" in text
