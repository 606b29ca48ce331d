"""Exact resume, normalization folding, and config errors."""

from __future__ import annotations

import pytest
import torch

from qscope.sae import SAEConfig, load_sae
from qscope.training import TrainableSAE, TrainConfig, TrainConfigError, Trainer
from qscope.training.export import export_sae

LAYER = 3  # the layer of the synthetic caches in conftest.py (test modules cannot import conftest reliably)


def test_resume_continues_bitwise_identically(make_config, tmp_path):
    # Small dead_tokens so AuxK and the dead-latent counters are live across the checkpoint.
    kw = dict(max_tokens=256 * 12, sae={"architecture": "batchtopk", "dead_tokens": 512, "d_sae": 128})
    straight = Trainer(make_config(out=str(tmp_path / "a"), **kw))
    straight.fit(export=False)

    first = Trainer(make_config(out=str(tmp_path / "b"), **kw))
    first.fit(export=False, stop_at=5)  # "crash" after step 5: only the checkpoint survives
    assert first.step == 5 and (tmp_path / "b" / "checkpoint.pt").exists()
    resumed = Trainer(make_config(out=str(tmp_path / "b"), **kw))
    resumed.fit(resume=True, export=False)

    assert resumed.step == straight.step == 12
    for name, p in straight.saes[LAYER].state_dict().items():
        assert torch.equal(p, resumed.saes[LAYER].state_dict()[name]), name
    assert torch.equal(straight.since_fired[LAYER], resumed.since_fired[LAYER])
    assert straight.source.state_dict() == resumed.source.state_dict()


def test_resume_refuses_a_different_config(make_config, tmp_path):
    Trainer(make_config(out=str(tmp_path / "r"), max_tokens=256 * 4)).fit(export=False, stop_at=2)
    other = Trainer(make_config(out=str(tmp_path / "r"), max_tokens=256 * 4, sae={"k": 5}))
    with pytest.raises(TrainConfigError, match="config differs"):
        other.fit(resume=True, export=False)


@pytest.mark.parametrize("architecture", ["topk", "jumprelu"])
def test_normalization_is_folded_into_the_exported_weights(architecture, tmp_path):
    torch.manual_seed(0)
    d_in, d_sae, k, scale = 48, 96, 6, 0.037
    trained = TrainableSAE(d_in, d_sae, k)
    with torch.no_grad():
        trained.b_enc.normal_(0, 0.1)
        trained.b_dec.normal_(0, 0.5)
    x_raw = torch.randn(300, d_in) * 27 + 3
    cfg = SAEConfig(architecture, d_in, d_sae, k if architecture == "topk" else None, True, hook_layer=LAYER)
    threshold = 0.05 if architecture == "jumprelu" else None
    exported = export_sae(trained, scale, cfg, threshold)
    exported.save(tmp_path / "sae")  # float32 round trip through the SAELens files
    loaded = load_sae(str(tmp_path / "sae"))

    with torch.no_grad():
        pre = trained.pre_acts(x_raw * scale)
        if architecture == "topk":
            sel = trained.select(pre, k, batch=False)
            values = sel.pre
        else:  # the trained rule with a fixed threshold: JumpReLU
            rows, cols = (pre > threshold).nonzero(as_tuple=True)
            counts = torch.bincount(rows, minlength=len(pre))
            sel = trained.select(pre, 1, batch=False)._replace(
                rows=rows, cols=cols, pre=pre[rows, cols], offsets=torch.cumsum(counts, 0) - counts
            )
            values = sel.pre
        expected = (trained.decode_sparse(sel, values) + trained.b_dec) / scale
    got = loaded(x_raw)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(x_raw.abs().max()))


def test_bad_configs_fail_clearly(make_config, synthetic, tmp_path):
    with pytest.raises(TrainConfigError, match="exceeds d_sae"):
        make_config(sae={"k": 300, "d_sae": 256}).validate()
    with pytest.raises(TrainConfigError, match=r"sae.architecture must be one of \['topk', 'batchtopk'\], got 'gated'"):
        make_config(sae={"architecture": "gated"}).validate()
    with pytest.raises(TrainConfigError, match="not found"):
        TrainConfig(cache=str(tmp_path / "nope")).validate()
    with pytest.raises(TrainConfigError, match="corpus .* not found"):
        TrainConfig(corpus=str(tmp_path / "missing.parquet")).validate()
    with pytest.raises(TrainConfigError, match="no training data"):
        TrainConfig().validate()
    with pytest.raises(TrainConfigError, match=r"TrainConfig: unknown key\(s\) \['layer'\]"):
        TrainConfig.from_dict({"layer": 3})
    with pytest.raises(TrainConfigError, match=r"holds layers \[3\]"):
        Trainer(make_config(layers=[7]))


def test_layer_out_of_range_is_reported_against_the_model(tmp_path):
    class FakeLM:  # only what the range check reads: no model load needed
        name, n_layers, d_model = "fake-4-layer", 4, 8

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "hello"}\n')
    with pytest.raises(TrainConfigError, match=r"layer 9 out of range: fake-4-layer has layers 0..3"):
        Trainer(TrainConfig(corpus=str(corpus), layers=[9], split=None), lm=FakeLM())
