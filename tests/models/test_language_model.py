"""LanguageModel: offline default, conversion cache, truncated forward, padding invariance, architectures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from qscope.errors import InputError, ModelLoadError
from qscope.models import LanguageModel
from qscope.models.resolve import COMPLETE_MARKER, embedded_model_dir, resolve_model_dir


def test_default_model_loads_offline_and_reuses_conversion_cache(lm):
    cache = embedded_model_dir("smollm2-135m")
    marker = cache / COMPLETE_MARKER
    assert marker.exists() and (cache / "model.safetensors").exists()
    stamp = marker.stat().st_mtime_ns
    # A fresh process with the hub forced offline loads from the cache without converting again.
    code = "from qscope.models import LanguageModel; m=LanguageModel.load(); print(m.n_layers, m.d_model)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    n_layers, d_model = out.stdout.split()
    assert (int(n_layers), int(d_model)) == (30, 576)
    assert marker.stat().st_mtime_ns == stamp, "second load converted the GGUF again"
    # the converted directory is plain safetensors without the GGUF quantization config (vLLM can serve it)
    assert "quantization_config" not in (cache / "config.json").read_text()


def test_truncated_forward_equals_full_hidden_states(lm):
    texts = ["The quick brown fox jumps over the lazy dog.", "Short one."]
    full = lm.full_hidden_states(texts)
    res = lm.residuals(texts, layers=[3, 15])
    mask = res.attention_mask.bool()
    for layer in (3, 15):
        torch.testing.assert_close(res.hidden[layer][mask], full[layer + 1][mask], rtol=0, atol=1e-5)


def test_truncated_forward_stops_early(lm):
    calls = []
    handle = lm.layers[20].register_forward_hook(lambda *a: calls.append(1))
    try:
        lm.residuals(["hello there"], layers=[5])
    finally:
        handle.remove()
    assert calls == [], "blocks after the deepest requested layer must not run"


def test_padding_invariance_of_features(lm, random_sae_factory):
    from qscope.features import FeatureExtractor

    sae = random_sae_factory("topk", d_sae=2048, k=16)
    ex = FeatureExtractor.single(lm, sae)
    text = "Amateur radio operators use Morse code."
    alone = ex.extract([text])[15][0]
    batched = ex.extract(["A much longer text that forces padding of the shorter one " * 5, text, "x y"])[15][1]
    assert alone.tokens == batched.tokens
    for a_i, b_i, a_v, b_v in zip(alone.token_indices, batched.token_indices, alone.token_values, batched.token_values):
        assert set(a_i.tolist()) == set(b_i.tolist())
        torch.testing.assert_close(torch.tensor(sorted(a_v)), torch.tensor(sorted(b_v)), rtol=1e-4, atol=1e-4)


def test_long_texts_are_truncated_and_counted(lm):
    res = lm.residuals(["word " * 400, "short"], layers=[1], max_length=32)
    assert res.truncated == [True, False]
    assert res.input_ids.shape[1] == 32


@pytest.mark.parametrize("bad,match", [([], "empty input"), (["ok", 3], "text #1 is int"), (["  "], "whitespace")])
def test_bad_texts_are_clear_errors(lm, bad, match):
    with pytest.raises(InputError, match=match):
        lm.residuals(bad, layers=[1])


def test_layer_out_of_range(lm):
    with pytest.raises(InputError, match="out of range"):
        lm.residuals(["hi"], layers=[30])


def test_unknown_model_spec():
    with pytest.raises(ModelLoadError, match="unknown model"):
        resolve_model_dir("no-such-model-name")


def test_sae_width_mismatch_is_a_clear_error(lm, random_sae_factory):
    from qscope.errors import ShapeMismatchError
    from qscope.features import FeatureExtractor

    with pytest.raises(ShapeMismatchError, match="hidden size 576"):
        FeatureExtractor.single(lm, random_sae_factory("topk", d_in=512, d_sae=256, k=4))


# --- architectures on tiny random-weight configs --------------------------------------------------------
def _tiny_config(kind: str):
    import transformers as tf

    common = dict(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    if kind == "llama":
        return tf.LlamaConfig(**common)
    if kind == "qwen2":
        return tf.Qwen2Config(**common)
    if kind == "qwen3":
        return tf.Qwen3Config(head_dim=16, **common)
    if kind == "qwen3_5":
        from transformers.models.qwen3_5 import Qwen3_5TextConfig

        return Qwen3_5TextConfig(
            head_dim=16,
            layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
            **common,
        )
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3", "qwen3_5"])
def test_tiny_architectures_load_from_dir_and_truncate(tmp_path, lm, kind):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_tiny_config(kind))
    model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)  # any tokenizer with the right vocab size will do
    tiny = LanguageModel.load(str(tmp_path))
    assert tiny.n_layers == 4 and tiny.d_model == 64
    texts = ["tiny models keep the code honest", "hi"]
    full = tiny.full_hidden_states(texts)
    res = tiny.residuals(texts, layers=[1, 2])
    mask = res.attention_mask.bool()
    for layer in (1, 2):
        torch.testing.assert_close(res.hidden[layer][mask], full[layer + 1][mask], rtol=1e-5, atol=1e-5)
