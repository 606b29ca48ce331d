"""HF engine steering on the real default model: identity at strength 0, errors before generation, activation
and suppression measured in SAE space, seeded sampling, the sweep table."""

from __future__ import annotations

import pytest
import torch

from qscope.errors import QscopeError
from qscope.steering import activate, clamp, suppress
from qscope.steering.errors import InvalidStrengthError, MissingSAEError, SAEMismatchError, UnknownFeatureError

N_NEW = 12


@pytest.fixture(scope="module")
def unsteered(hf_engine, prompts):
    return hf_engine.generate(prompts, max_new_tokens=N_NEW)


def test_strength_zero_equals_unsteered_byte_for_byte(hf_engine, unsteered, concept_feature, prompts):
    iv = activate(concept_feature, 0.0) + suppress(concept_feature + 1, 0.0, positions="prompt")
    zero = hf_engine.generate(prompts, intervention=iv, max_new_tokens=N_NEW)
    assert [r.text.encode() for r in zero] == [r.text.encode() for r in unsteered]
    assert [r.token_ids for r in zero] == [r.token_ids for r in unsteered]


def test_bad_input_fails_before_generation(hf_engine, steer_sae, monkeypatch, prompts):
    def boom(*a, **k):
        raise AssertionError("generation started")

    monkeypatch.setattr(hf_engine, "_generate", boom)
    for iv, error in [
        (activate(steer_sae.d_sae), UnknownFeatureError),
        (activate(1, layer=3), MissingSAEError),
        (activate(1, float("nan")), InvalidStrengthError),
        (activate(1, sae="someone-else/sae"), SAEMismatchError),
    ]:
        with pytest.raises(error):
            hf_engine.generate(prompts, intervention=iv)
    with pytest.raises(QscopeError):
        hf_engine.generate([""])


def test_activation_raises_target_feature_in_generated_text(hf_engine, mean_activation, concept_feature):
    prompt = ["Tell me about your weekend."]
    base = hf_engine.generate(prompt, max_new_tokens=16)
    steered = hf_engine.generate(prompt, intervention=activate(concept_feature, 1.0), max_new_tokens=16)
    assert steered[0].text != base[0].text
    before = mean_activation([base[0].text], concept_feature)[0]
    after = mean_activation([steered[0].text], concept_feature)[0]
    assert after > 2 * before + 1e-3, (before, after, base[0].text, steered[0].text)


SEA_TEXT = ["Whales and dolphins swim in the deep blue ocean near the shore."]


def steered_block_output(lm, saes, plan, text, layer=15):
    """Block `layer`'s output on one text in a full forward with `plan` steering the model (None: unsteered)."""
    from qscope.steering.compiled import build_layers
    from qscope.steering.hf_hooks import steer_hf

    enc, _ = lm.tokenize(text)
    n = enc["input_ids"].shape[1]
    captured = {}
    with steer_hf(lm, build_layers(plan, saes) if plan else {}, torch.tensor([n]), torch.tensor([0])):
        # registered after the steering hook, so it sees the steered block output
        capture = lm.layers[layer].register_forward_hook(
            lambda m, i, o: captured.__setitem__("x", o[0] if isinstance(o, tuple) else o)
        )
        try:
            lm.model(**enc, use_cache=False)
        finally:
            capture.remove()
    return captured["x"][0]


def unchanged_share(before, after, feature) -> float:
    """Share of the other features' codes (token x feature) that moved by at most 10% of the largest code."""
    others = torch.ones(before.shape[1], dtype=torch.bool)
    others[feature] = False
    tol = 0.1 * float(before.max())
    return float((after[:, others] - before[:, others]).abs().le(tol).float().mean())


@torch.no_grad()
def test_suppression_drives_feature_to_zero_at_hook_layer(lm, steer_sae, hf_engine, concept_feature):
    def codes_at_layer(plan):
        return steer_sae.encode_dense(steered_block_output(lm, hf_engine.saes, plan, SEA_TEXT)[1:])

    before = codes_at_layer(None)
    after = codes_at_layer(hf_engine.plan(suppress(concept_feature, 1.0)))
    f = concept_feature
    assert before[:, f].max() > 0, "the concept feature must fire on this text"
    assert after[:, f].abs().max() <= 0.05 * before[:, f].max()
    close = unchanged_share(before, after, f)
    assert close > 0.95, close


@torch.no_grad()
def test_suppression_with_the_shipped_sae(lm, shipped_sae):
    """The real SAE: a feature's encoder column and decoder row are not exactly dual (overlap ~0.7, not 1); the edit
    divides by that overlap, so the suppressed feature re-encodes to ~0 (an edit along the plain decoder row left
    5.4 -> 1.1 on the strongest token of the interim SAE)."""
    from qscope.generation import make_engine

    engine = make_engine("hf", lm=lm, saes={15: shipped_sae}, scales={15: {}})
    res = lm.residuals(SEA_TEXT, [15])
    before = shipped_sae.encode_dense(res.hidden[15][0, 1:])
    f = int(before.max(0).values.argmax())
    after = shipped_sae.encode_dense(steered_block_output(lm, engine.saes, engine.plan(suppress(f, 1.0)), SEA_TEXT)[1:])
    assert after[:, f].sum() <= 0.05 * before[:, f].sum()
    close = unchanged_share(before, after, f)
    assert close > 0.95, close


NEUTRAL_PROMPTS = ["Tell me about your weekend.", "Describe your morning routine."]


@torch.no_grad()
def test_activation_raises_real_features_of_the_shipped_sae(
    lm, shipped_sae, shipped_stats, shipped_concept_contrast, feature_profile
):
    """Activate real features of the shipped SAE, re-encode the generated text alone, measure each feature.

    Features are chosen from data, never by id (the SAE gets retrained): the 3 that best separate the sea sentences
    from the neutral ones (per-token mean, in strength units) among the specific ones (density < 2% in the SAE's
    feature statistics) that are silent on the unsteered continuations, so the unsteered activation is exactly 0.
    Each is activated alone at strength 2 (twice its typical max), greedy, 16 tokens.

    Single real features are not all steerable in a 135M model: with the interim SAE of 2026-11-25 16:44, features
    4290 and 3962 fired on both steered texts (peaks 0.73/0.66 and 0.51/0.58 units; beach, ocean, sea), 3854 on
    neither (the text drifted to "weather"); at strength 1 none fired. So the assertion pools the 3 features:
    their mean peak activation (measured 0.41 units) must clear 0.15 units, which one steerable feature of three
    achieves alone, and at least one feature must fire on every prompt. The final SAE (2.0M tokens, feature ids
    different) passes the same assertions (clean-clone `make test`, 2026-11-25 19:46).
    """
    from qscope.features import FeatureExtractor
    from qscope.generation import make_engine

    engine = make_engine("hf", lm=lm, saes={15: shipped_sae}, batch_size=1)
    extractor = FeatureExtractor(lm, {15: shipped_sae})
    base = engine.generate(NEUTRAL_PROMPTS, max_new_tokens=16)
    _, base_peak = feature_profile(extractor, [r.text for r in base])
    density = torch.as_tensor(shipped_stats.density)
    eligible = (density > 0) & (density < 0.02) & (base_peak.max(0).values == 0)
    score = torch.where(eligible, shipped_concept_contrast, torch.full_like(shipped_concept_contrast, -torch.inf))
    features = score.topk(3).indices.tolist()
    unit = torch.as_tensor(shipped_stats.strength_unit)
    peaks, report = [], []
    for f in features:
        steered = engine.generate(NEUTRAL_PROMPTS, intervention=activate(f, 2.0), max_new_tokens=16)
        mean, peak = feature_profile(extractor, [r.text for r in steered])
        peaks.append(peak[:, f] / unit[f])  # [prompts], in strength units; unsteered: exactly 0
        report.append((f, (mean[:, f] / unit[f]).tolist(), peaks[-1].tolist(), [r.text for r in steered]))
    peaks = torch.stack(peaks)  # [features, prompts]
    assert float(peaks.mean()) >= 0.15, report
    assert bool((peaks > 0).any(0).all()), report


def test_clamp_and_positions_run(hf_engine, concept_feature, unsteered, prompts):
    out = hf_engine.generate(
        prompts[:1], intervention=clamp(concept_feature, 1.0, positions="prompt"), max_new_tokens=4
    )
    assert len(out) == 1 and len(out[0].token_ids) <= 4
    # steering only the generated positions leaves the prompt's KV untouched; the first token may still change
    gen = hf_engine.generate(
        prompts[:1], intervention=activate(concept_feature, 0.0, positions="generated"), max_new_tokens=N_NEW
    )
    assert gen[0].token_ids == unsteered[0].token_ids


def test_seeded_sampling_is_reproducible(hf_engine, prompts):
    a = hf_engine.generate(prompts[:1], max_new_tokens=8, temperature=0.9, seed=7)
    b = hf_engine.generate(prompts[:1], max_new_tokens=8, temperature=0.9, seed=7)
    assert a[0].token_ids == b[0].token_ids


def test_strength_sweep_table(hf_engine, concept_feature):
    from qscope.steering import strength_sweep

    result = strength_sweep(
        hf_engine, ["Tell me about your weekend."], concept_feature, [0.0, 1.0], max_new_tokens=10, ppl_factor=100.0
    )
    assert [r["strength"] for r in result.rows] == [0.0, 1.0]
    assert set(result.ROW_KEYS) <= set(result.rows[0])
    assert result.rows[1]["mean_max_activation"] > result.rows[0]["mean_max_activation"]
    assert result.best_strength == 1.0
    assert result.to_polars().height == 2
