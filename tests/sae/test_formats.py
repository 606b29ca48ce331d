"""SAE formats: native SAELens round trip, Qwen-Scope and sparsify files against reference formulas."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from qscope.errors import SAELoadError, ShapeMismatchError
from qscope.sae import SAE_REGISTRY, k_from_repo_name, load_sae


def _codes_equal(a, b):
    da, db = a.to_dense(4096), b.to_dense(4096)
    torch.testing.assert_close(da, db, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["topk", "jumprelu", "relu"])
def test_saelens_round_trip_identical_encode(tmp_path, random_sae_factory, arch):
    sae = random_sae_factory(arch, d_sae=512)
    x = torch.randn(64, 576)
    sae.save(tmp_path / "sae")
    assert (tmp_path / "sae" / "cfg.json").exists() and (tmp_path / "sae" / "sae_weights.safetensors").exists()
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is type(sae) and loaded.cfg.hook_layer == 15
    torch.testing.assert_close(loaded.encode_dense(x), sae.encode_dense(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded(x), sae(x), rtol=0, atol=0)


def test_registry_has_the_three_architectures():
    assert {"topk", "jumprelu", "relu"} <= set(SAE_REGISTRY)


def test_sparse_decode_matches_dense_formula(random_sae_factory):
    sae = random_sae_factory("topk", d_sae=512, k=8)
    x = torch.randn(10, 576)
    dense = sae.encode_dense(x)
    torch.testing.assert_close(sae(x), dense @ sae.W_dec + sae.b_dec, rtol=1e-5, atol=1e-5)
    assert (dense > 0).sum(-1).max() <= 8


def test_jumprelu_and_relu_match_dense_reference(random_sae_factory):
    x = torch.randn(32, 576)
    jr = random_sae_factory("jumprelu", d_sae=256)
    pre = x @ jr.W_enc + jr.b_enc
    torch.testing.assert_close(jr.encode_dense(x), pre * (pre > jr.threshold), rtol=0, atol=0)
    relu = random_sae_factory("relu", d_sae=256)
    torch.testing.assert_close(relu.encode_dense(x), (x @ relu.W_enc + relu.b_enc).relu(), rtol=0, atol=0)


def _qwen_scope_state(d_model=64, d_sae=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(d_sae, d_model, generator=g) / d_model**0.5,  # (d_sae, d_model)
        "W_dec": torch.randn(d_model, d_sae, generator=g) / d_sae**0.5,  # (d_model, d_sae)
        "b_enc": torch.randn(d_sae, generator=g) * 0.1,
        "b_dec": torch.randn(d_model, generator=g) * 0.1,
    }


def test_qwen_scope_pt_encodes_like_reference_formula(tmp_path):
    repo = tmp_path / "SAE-Res-Qwen3-1.7B-Base-W32K-L0_50"
    repo.mkdir()
    state = _qwen_scope_state()
    torch.save(state, repo / "layer7.sae.pt")
    sae = load_sae(repo, layer=7)
    assert sae.cfg.k == 50 and sae.cfg.hook_layer == 7 and sae.cfg.model_name == "Qwen/Qwen3-1.7B-Base"
    x = torch.randn(20, 64)
    # Reference written from the Qwen-Scope formula:
    # pre = x @ W_enc.T + b_enc; keep top-50; decode acts @ W_dec.T + b_dec
    pre = x @ state["W_enc"].T + state["b_enc"]
    vals, idx = pre.topk(50, dim=-1)
    ref = torch.zeros_like(pre).scatter_(1, idx, vals.relu())
    torch.testing.assert_close(sae.encode_dense(x), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sae(x), ref @ state["W_dec"].T + state["b_dec"], rtol=1e-5, atol=1e-5)
    # the file itself can be passed too (k then comes from the parent directory name)
    torch.testing.assert_close(load_sae(repo / "layer7.sae.pt").encode_dense(x), ref, rtol=1e-6, atol=1e-6)


def test_qwen_scope_save_as_saelens_round_trip(tmp_path):
    repo = tmp_path / "SAE-Res-Qwen3-8B-Base-W64K-L0_80"
    repo.mkdir()
    torch.save(_qwen_scope_state(d_sae=512), repo / "layer3.sae.pt")
    sae = load_sae(repo / "layer3.sae.pt")
    sae.save(tmp_path / "native")
    x = torch.randn(8, 64)
    torch.testing.assert_close(load_sae(tmp_path / "native").encode_dense(x), sae.encode_dense(x), rtol=0, atol=0)


def test_k_from_repo_name():
    assert k_from_repo_name("Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_50") == 50
    with pytest.raises(SAELoadError, match="L0_"):
        k_from_repo_name("Qwen/some-sae")


def test_sparsify_layout_encodes_like_reference(tmp_path):
    d_in, d_sae, k = 64, 256, 12
    g = torch.Generator().manual_seed(1)
    tensors = {
        "encoder.weight": torch.randn(d_sae, d_in, generator=g) / 8,
        "encoder.bias": torch.randn(d_sae, generator=g) * 0.1,
        "W_dec": torch.randn(d_sae, d_in, generator=g) / 16,
        "b_dec": torch.randn(d_in, generator=g) * 0.1,
    }
    hook = tmp_path / "run" / "layers.6"
    hook.mkdir(parents=True)
    save_file(tensors, hook / "sae.safetensors")
    (hook / "cfg.json").write_text(
        json.dumps(
            {
                "expansion_factor": 4,
                "normalize_decoder": True,
                "num_latents": d_sae,
                "k": k,
                "multi_topk": False,
                "d_in": d_in,
            }
        )
    )
    sae = load_sae(tmp_path / "run", layer=6)
    assert sae.cfg.hook_layer == 6
    x = torch.randn(16, d_in)
    # sparsify: pre = relu(encoder(x - b_dec)); top-k; decode top_acts @ W_dec + b_dec
    pre = torch.relu((x - tensors["b_dec"]) @ tensors["encoder.weight"].T + tensors["encoder.bias"])
    vals, idx = pre.topk(k, dim=-1)
    ref = torch.zeros_like(pre).scatter_(1, idx, vals)
    torch.testing.assert_close(sae.encode_dense(x), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sae(x), ref @ tensors["W_dec"] + tensors["b_dec"], rtol=1e-5, atol=1e-5)


# --- bad input -------------------------------------------------------------------------------------------
def test_unknown_sae_path_is_a_clear_error(tmp_path):
    with pytest.raises(SAELoadError, match="unknown SAE"):
        load_sae(str(tmp_path / "does-not-exist"))


class Payload:  # module-level so pickle can store it; weights_only loading must refuse it
    pass


def test_pt_with_non_tensor_objects_is_refused(tmp_path):
    repo = tmp_path / "SAE-Res-X-W1K-L0_8"
    repo.mkdir()
    with open(repo / "layer1.sae.pt", "wb") as f:
        torch.save({"W_enc": torch.zeros(4, 2), "evil": Payload()}, f, pickle_module=pickle)
    with pytest.raises(SAELoadError, match="weights_only"):
        load_sae(repo / "layer1.sae.pt")


def test_qwen_scope_missing_keys_named(tmp_path):
    repo = tmp_path / "SAE-Res-X-W1K-L0_8"
    repo.mkdir()
    torch.save({"W_enc": torch.zeros(16, 4)}, repo / "layer1.sae.pt")
    with pytest.raises(SAELoadError, match="missing Qwen-Scope keys"):
        load_sae(repo / "layer1.sae.pt")


def test_wrong_width_input_is_a_clear_error(random_sae_factory):
    sae = random_sae_factory("topk", d_sae=128, k=4)
    with pytest.raises(ShapeMismatchError, match="d_in=576"):
        sae.encode(torch.randn(3, 100))


def test_topk_k_larger_than_d_sae_rejected():
    from qscope.errors import QscopeError
    from qscope.sae import SAE, SAEConfig

    with pytest.raises(QscopeError, match="exceeds d_sae"):
        SAE.from_config(SAEConfig(architecture="topk", d_in=8, d_sae=4, k=5))
    with pytest.raises(QscopeError, match="unknown SAE architecture"):
        SAE.from_config(SAEConfig(architecture="gated", d_in=8, d_sae=4))


def test_saelens_rewrite_keeps_everything_next_to_the_weights(tmp_path, random_sae_factory):
    """Re-exporting into an existing SAE directory replaces cfg.json + weights only: model card, feature
    statistics and sub-directories (dashboards, a user's notes) survive, and the new weights are the ones read."""
    from qscope.sae import save_saelens

    out = tmp_path / "sae"
    save_saelens(random_sae_factory("topk", d_sae=256, seed=0), out)
    (out / "MODEL_CARD.md").write_text("card")
    (out / "dashboards" / "features").mkdir(parents=True)
    (out / "dashboards" / "features" / "f7.html").write_text("<html>f7</html>")
    new = random_sae_factory("topk", d_sae=256, seed=1)
    save_saelens(new, out)
    assert (out / "MODEL_CARD.md").read_text() == "card"
    assert (out / "dashboards" / "features" / "f7.html").read_text() == "<html>f7</html>"
    torch.testing.assert_close(load_sae(out).W_dec, new.W_dec, rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
