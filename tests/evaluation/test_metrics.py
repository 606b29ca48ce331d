"""evaluate_sae on planted SAEs whose numbers are known from math, on the real embedded LM."""

from __future__ import annotations

import json
import math

import pytest
import torch

from qscope.errors import InputError, ShapeMismatchError
from qscope.evaluation import JSON_KEYS, evaluate_sae
from qscope.evaluation.texts import eval_token_mask
from qscope.sae import SAE, SAEConfig

LAYER = 15
N_TOKENS = 10_000  # more than the demo texts hold: every text is used, so expected values can be recomputed


def _eval_residuals(lm, texts):
    res = lm.residuals(texts, [LAYER])
    mask = eval_token_mask(res.input_ids, res.attention_mask, set(lm.tokenizer.all_special_ids))
    return res.hidden[LAYER][mask]


def test_identity_sae_is_perfect(lm, demo_texts, planted):
    n_dead, n_on = 7, 5
    sae = planted.identity(lm.d_model, n_dead=n_dead, n_always_on=n_on)
    r = evaluate_sae(lm, sae, demo_texts, n_tokens=N_TOKENS)
    x = _eval_residuals(lm, demo_texts)

    assert r.n_tokens == x.shape[0] > 100
    assert r.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert r.mse == pytest.approx(0.0, abs=1e-8)
    assert r.ce_loss_recovered == pytest.approx(1.0, abs=1e-6)
    assert r.kl_div == pytest.approx(0.0, abs=1e-6)
    assert r.delta_lm_loss == pytest.approx(0.0, abs=1e-6)
    assert r.ce_spliced == pytest.approx(r.ce_clean, abs=1e-6)
    assert r.ce_zero_ablation > r.ce_clean + 1.0  # zeroing the residual stream must hurt a lot

    # L0 = nonzero coordinates of x (one of relu(x), relu(-x) fires) + the always-on latents.
    assert r.l0 == pytest.approx(float((x != 0).sum(-1).double().mean()) + n_on, abs=1e-9)
    # Dead: the [I, -I] latent of dimension d dies iff x_d is never > 0 (resp. < 0) on any token; + planted dead.
    dead = int((~(x > 0).any(0)).sum()) + int((~(x < 0).any(0)).sum()) + n_dead
    assert r.dead_fraction == pytest.approx(dead / sae.d_sae, abs=0)
    assert r.dead_fraction >= n_dead / sae.d_sae


def test_zero_decoder_recovers_nothing(lm, demo_texts, planted):
    r = evaluate_sae(lm, planted.zero(lm.d_model), demo_texts, n_tokens=N_TOKENS)
    assert r.ce_loss_recovered == pytest.approx(0.0, abs=1e-6)
    assert r.ce_spliced == pytest.approx(r.ce_zero_ablation, abs=1e-6)
    assert r.delta_lm_loss == pytest.approx(r.ce_zero_ablation - r.ce_clean, abs=1e-6)
    assert r.kl_div > 1.0
    # Reconstruction 0: SSE = sum x^2 > SST, so EV = 1 - sum x^2 / SST < 0 and MSE = mean x^2.
    x = _eval_residuals(lm, demo_texts).double()
    assert r.mse == pytest.approx(float((x**2).mean()), rel=1e-6)
    sst = float(((x - x.mean(0)) ** 2).sum())
    assert r.explained_variance == pytest.approx(1 - float((x**2).sum()) / sst, rel=1e-6)


def test_fast_path_matches_hook_reference(lm, demo_texts, planted):
    """Resuming after block L with the cached output gives the same numbers as three full hooked forwards."""
    sae = planted.random_topk(lm.d_model)
    fast = evaluate_sae(lm, sae, demo_texts[:2], n_tokens=N_TOKENS, reuse_prefix=True)
    ref = evaluate_sae(lm, sae, demo_texts[:2], n_tokens=N_TOKENS, reuse_prefix=False)
    for key in (
        "explained_variance",
        "mse",
        "l0",
        "dead_fraction",
        "ce_clean",
        "ce_spliced",
        "ce_zero_ablation",
        "kl_div",
        "ce_loss_recovered",
    ):
        assert getattr(fast, key) == pytest.approx(getattr(ref, key), rel=1e-4, abs=1e-5), key
    assert 0.0 < fast.l0 <= 16
    assert fast.ce_spliced > fast.ce_clean


def test_json_contract(lm, demo_texts, planted):
    r = evaluate_sae(lm, planted.random_topk(lm.d_model), demo_texts[:2], n_tokens=32)
    out = r.to_json()
    assert list(out)[: len(JSON_KEYS)] == list(JSON_KEYS)
    assert out["sae"] == "random/topk-0" and out["layer"] == LAYER
    assert out["n_tokens"] >= 32
    json.dumps(out, allow_nan=False)
    assert all(isinstance(out[k], float) for k in JSON_KEYS[:10])


def test_json_nan_becomes_null():
    from qscope.evaluation import SAEEvalResult

    r = SAEEvalResult(*([0.5] * 4), math.nan, *([0.1] * 5), n_tokens=1, sae="s", layer=0)
    assert r.to_json()["ce_loss_recovered"] is None


def test_bad_inputs(lm, demo_texts, planted):
    sae = planted.random_topk(lm.d_model)
    with pytest.raises(InputError, match="out of range"):
        evaluate_sae(lm, sae, demo_texts, layer=lm.n_layers)
    no_layer = SAE.from_config(SAEConfig("topk", lm.d_model, 64, k=4))
    with pytest.raises(InputError, match="layer"):
        evaluate_sae(lm, no_layer, demo_texts)
    narrow = SAE.from_config(SAEConfig("topk", 64, 128, k=4, hook_layer=LAYER))
    with pytest.raises(ShapeMismatchError):
        evaluate_sae(lm, narrow, demo_texts)
    with pytest.raises(InputError):
        evaluate_sae(lm, sae, [], n_tokens=8)
    with pytest.raises(InputError):
        evaluate_sae(lm, sae, demo_texts, n_tokens=0)


def test_lm_left_unmodified(lm, demo_texts, planted):
    """Hooks and patched block forwards are removed afterwards, also when the SAE raises."""
    before = lm.full_hidden_states(demo_texts[:1])[-1]
    hooks_before = [dict(layer._forward_hooks) for layer in lm.layers]
    evaluate_sae(lm, planted.random_topk(lm.d_model), demo_texts[:1], n_tokens=16)

    class Boom(RuntimeError):
        pass

    bad = planted.random_topk(lm.d_model)
    bad.encode = lambda x: (_ for _ in ()).throw(Boom())
    with pytest.raises(Boom):
        evaluate_sae(lm, bad, demo_texts[:1], n_tokens=16)
    after = lm.full_hidden_states(demo_texts[:1])[-1]
    assert torch.equal(before, after)
    assert [dict(layer._forward_hooks) for layer in lm.layers] == hooks_before
    assert all("forward" not in vars(layer) for layer in lm.layers)
