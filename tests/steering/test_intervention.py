"""Intervention API: building, serialization, validation errors, and the steering math (no model needed)."""

from __future__ import annotations

import math

import pytest
import torch

from qscope.errors import QscopeError
from qscope.steering import (
    Intervention,
    InterventionError,
    InvalidStrengthError,
    LayerSteering,
    MissingSAEError,
    SAEMismatchError,
    UnknownFeatureError,
    activate,
    clamp,
    compile_plan,
    suppress,
)
from qscope.steering.compiled import SteeringPlan, position_masks


@pytest.fixture(scope="module")
def sae(random_sae_factory):
    return random_sae_factory(d_sae=256, k=8, seed=3)


class _Scales:
    def __init__(self, value):
        self.value = value

    def scale(self, feature):
        return self.value


def test_builder_and_roundtrip_json_yaml(sae):
    iv = activate(3, 2.0, sae=sae) + suppress(5, 1.0, layer=15, positions="generated") + clamp(7, 0.5, scale=3.0)
    assert len(iv) == 3 and iv.edits[0].layer == 15 and iv.edits[0].sae_id == sae.sae_id
    assert Intervention.from_json(iv.to_json()) == iv
    assert Intervention.from_yaml(iv.to_yaml()) == iv
    assert Intervention.from_dict(iv.to_dict()["edits"]) == iv  # a bare list of edits is accepted too
    assert iv.with_strength(0.0).edits[2].strength == 0.0


@pytest.mark.parametrize(
    "iv, error",
    [
        (activate(256, 1.0), UnknownFeatureError),
        (activate(-1, 1.0), UnknownFeatureError),
        (activate(3, 1.0, layer=4), MissingSAEError),
        (activate(3, float("nan")), InvalidStrengthError),
        (activate(3, float("inf")), InvalidStrengthError),
        (suppress(3, -math.inf), InvalidStrengthError),
        (clamp(3, -1.0), InvalidStrengthError),
        (activate(3, 1.0, scale=0.0), InvalidStrengthError),
        (activate(3, 1.0, sae="other/sae"), SAEMismatchError),
        (activate(3, 1.0, positions="middle"), InterventionError),
    ],
)
def test_bad_input_is_rejected(sae, iv, error):
    with pytest.raises(error) as info:
        iv.validate({15: sae})
    assert isinstance(info.value, QscopeError)


def test_ambiguous_layer_and_bad_dicts(sae, random_sae_factory):
    with pytest.raises(MissingSAEError, match="several SAEs"):
        activate(3).validate({15: sae, 10: random_sae_factory(d_sae=256, k=8, hook_layer=10, seed=4)})
    with pytest.raises(InterventionError, match="unknown keys"):
        Intervention.from_dict({"edits": [{"op": "activate", "feature": 1, "strength": 1, "colour": "red"}]})
    with pytest.raises(InterventionError, match="unknown op"):
        Intervention.from_dict([{"op": "boost", "feature": 1, "strength": 1}]).validate({15: sae})
    with pytest.raises(InterventionError, match="not valid JSON"):
        Intervention.from_json("{")


def test_position_masks():
    positions = torch.tensor([0, 1, 2, 3, 4, 5])
    masks = position_masks(positions, torch.full_like(positions, 4))  # prompt = positions 0..3
    assert masks[0].tolist() == [False, True, True, True, True, True]  # all: never position 0
    assert masks[1].tolist() == [False, True, True, True, False, False]  # prompt
    assert masks[2].tolist() == [False, False, False, True, True, True]  # generated: predicts a new token


def _steering(iv, sae, scale=2.0) -> LayerSteering:
    plan = compile_plan(iv.validate({15: sae}), {15: _Scales(scale)})
    return LayerSteering(plan.layers[15], sae)


def test_strength_zero_is_exactly_identity(sae):
    x = torch.randn(7, sae.d_in) * 3
    masks = position_masks(torch.arange(7), torch.full((7,), 3))
    for iv in (activate(3, 0.0), suppress(5, 0.0), activate(1, 0.0, positions="prompt") + suppress(2, 0.0)):
        out = x + _steering(iv, sae).delta(x, masks)
        assert torch.equal(out, x)


def test_activate_adds_scaled_decoder_row_on_masked_positions(sae):
    x = torch.randn(6, sae.d_in)
    masks = position_masks(torch.arange(6), torch.full((6,), 3))
    delta = _steering(activate(3, 1.5, positions="generated"), sae, scale=2.0).delta(x, masks)
    expected = sae.W_dec[3].detach() * 3.0
    assert torch.allclose(delta[2:], expected.expand(4, -1))
    assert torch.equal(delta[:2], torch.zeros(2, sae.d_in))


@torch.no_grad()
def test_suppress_removes_feature_and_keeps_error_term(sae):
    torch.manual_seed(0)
    x = torch.randn(64, sae.d_in) * 2
    acts = sae.encode_dense(x)
    f = int(acts.sum(0).argmax())
    masks = position_masks(torch.arange(1, 65), torch.full((64,), 1))
    x2 = x + _steering(suppress(f, 1.0), sae).delta(x, masks)
    fired = acts[:, f] > 0
    # the edit removes exactly f's term from the reconstruction, so x - sae_reconstruction (the error) is kept
    change = x2 - x
    assert torch.allclose(change, -acts[:, f : f + 1] * sae.W_dec[f].detach(), atol=1e-5)
    acts2 = sae.encode_dense(x2)
    assert acts2[fired, f].abs().max() < 0.05 * acts[fired, f].max()
    others = [i for i in range(sae.d_sae) if i != f]
    close = torch.isclose(acts2[:, others], acts[:, others], atol=0.05 * float(acts.max())).float().mean()
    assert close > 0.9


def test_clamp_sets_feature_value(sae):
    x = torch.randn(16, sae.d_in)
    masks = position_masks(torch.arange(1, 17), torch.full((16,), 1))
    steering = _steering(clamp(4, 1.5), sae, scale=2.0)
    before = steering.feature_acts(x)[:, 0]
    delta = steering.delta(x, masks)
    assert torch.allclose(delta, (3.0 - before)[:, None] * sae.W_dec[4].detach(), atol=1e-5)


def test_plan_payload_roundtrip(sae):
    plan = compile_plan((activate(3, 2.0) + suppress(5)).validate({15: sae}), {15: _Scales(1.5)})
    assert SteeringPlan.from_payload(plan.to_payload()) == plan
    assert [e.coefficient for e in plan.layers[15]] == [3.0, 1.0]  # suppress stays a unitless fraction


def test_calibration_sources(sae):
    import numpy as np

    from qscope.steering import StrengthCalibration

    class Stats:  # the FeatureStats surface calibration reads
        def __init__(self, owner):
            self.strength_unit = np.arange(sae.d_sae, dtype=np.float32) + 1.0
            self.metadata = {"sae": owner}

    cal = StrengthCalibration(sae, stats=Stats(sae.sae_id), explicit={4: 0.5})
    assert cal.source == "feature_stats" and cal.scale(3) == 4.0 and cal.scale(4) == 0.5
    assert StrengthCalibration(sae, stats={3: 2.5}).scale(3) == 2.5
    with pytest.raises(SAEMismatchError):
        StrengthCalibration(sae, stats=Stats("another/sae"))
    with pytest.raises(InterventionError, match="no feature statistics"):
        StrengthCalibration(sae).scale(3)  # no stats and no model to measure with


@torch.no_grad()
@pytest.mark.parametrize("architecture", ["topk", "relu", "jumprelu"])
def test_feature_acts_match_full_encode(random_sae_factory, architecture):
    sae = random_sae_factory(architecture=architecture, d_sae=256, k=8, seed=5)
    x = torch.randn(32, sae.d_in) * 2
    steering = LayerSteering(
        compile_plan(suppress(3).validate({15: sae}) + suppress(9).validate({15: sae}), {15: _Scales(1.0)}).layers[15],
        sae,
    )
    full = sae.encode_dense(x)[:, [3, 9]]
    assert torch.allclose(steering.feature_acts(x), full, atol=1e-5)


@torch.no_grad()
def test_topk_probe_bound_is_exact_and_prunes(random_sae_factory, monkeypatch):
    """The probe's bound skips tokens without changing any activation: same active set as `sae.encode`, for a
    feature that fires often and one that fires rarely, while the full encoder sees only some of the tokens."""
    sae = random_sae_factory(d_sae=2048, k=32, seed=7)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, sae.d_in, generator=g) * 2 + sae.b_dec
    full = sae.encode_dense(x)
    freq = (full > 0).sum(0)
    often, rare = int(freq.argmax()), int(torch.where(freq > 0, freq, freq.max() + 1).argmin())
    seen = []
    pre_acts = sae.pre_acts
    monkeypatch.setattr(sae, "pre_acts", lambda rows: seen.append(rows.shape[0]) or pre_acts(rows))
    for f in (often, rare):
        seen.clear()
        steering = LayerSteering(compile_plan(suppress(f).validate({15: sae}), {15: _Scales(1.0)}).layers[15], sae)
        acts = steering.feature_acts(x)[:, 0]
        assert torch.equal(acts > 0, full[:, f] > 0)
        assert torch.allclose(acts, full[:, f], atol=1e-5)
        assert sum(seen) < x.shape[0]
    assert sum(seen) < 0.2 * x.shape[0]  # the rare feature: most tokens never reach the full encoder
