"""Qwen-Scope export: our SAEs written as `layer{n}.sae.pt` and read back by file, directory + layer and repo name."""

from __future__ import annotations

import pickle

import pytest
import torch

from qscope.errors import SAELoadError
from qscope.sae import load_sae, qwen_scope_repo_name, save_qwen_scope


@pytest.fixture()
def trained_like_sae(random_sae_factory):
    # apply_b_dec_to_input=True is what qscope's trainer exports; a non-trivial b_dec makes the b_enc fold matter.
    sae = random_sae_factory("topk", d_in=96, d_sae=384, k=12, hook_layer=9, apply_b_dec_to_input=True)
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.5)
    sae.cfg.model_name = "Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ"
    return sae


def test_repo_name_follows_qwen_scope_convention():
    assert qwen_scope_repo_name("Qwen/Qwen3-1.7B-Base", 32768, 50) == "SAE-Res-Qwen3-1.7B-Base-W32K-L0_50"
    assert (
        qwen_scope_repo_name("Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ", 5120, 32)
        == "SAE-Res-Qwen2.5-Coder-0.5B-Instruct-AWQ-W5K-L0_32"
    )
    assert qwen_scope_repo_name("x/m", 1000, 8) == "SAE-Res-m-W1000-L0_8"


def test_file_holds_only_tensors_in_qwen_scope_orientation(tmp_path, trained_like_sae):
    file = save_qwen_scope(trained_like_sae, tmp_path / "SAE-Res-m-W384-L0_12")
    assert file.name == "layer9.sae.pt"
    state = torch.load(file, weights_only=True)
    assert set(state) == {"W_enc", "W_dec", "b_enc", "b_dec"}
    assert tuple(state["W_enc"].shape) == (384, 96) and tuple(state["W_dec"].shape) == (96, 384)
    # The Qwen-Scope formula on the raw file reproduces our encoder (b_dec folded into b_enc).
    x = torch.randn(50, 96) * 3
    pre = x @ state["W_enc"].T + state["b_enc"]
    torch.testing.assert_close(pre, trained_like_sae.pre_acts(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("how", ["file", "directory+layer", "repo name via file"])
def test_export_loads_back_with_identical_features(tmp_path, trained_like_sae, how):
    repo = tmp_path / qwen_scope_repo_name(trained_like_sae.cfg.model_name, 384, 12)
    file = save_qwen_scope(trained_like_sae, repo)
    if how == "file":
        loaded = load_sae(file, k=12)
    elif how == "directory+layer":
        loaded = load_sae(repo, layer=9)
    else:  # k read from "...-L0_12" in the directory name
        loaded = load_sae(str(file))
    assert loaded.cfg.k == 12 and loaded.cfg.hook_layer == 9 and not loaded.cfg.apply_b_dec_to_input
    assert loaded.cfg.model_name == "Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ"  # from the repo name
    x = torch.randn(200, 96) * 3
    ours, theirs = trained_like_sae.encode(x), loaded.encode(x)
    # Same active features per token (as sets), same values up to the fold's float rounding.
    for a_i, a_v, b_i, b_v in zip(ours.indices, ours.values, theirs.indices, theirs.values):
        ka, kb = dict(zip(a_i.tolist(), a_v.tolist())), dict(zip(b_i.tolist(), b_v.tolist()))
        assert ka.keys() == kb.keys()
        torch.testing.assert_close(
            torch.tensor([kb[i] for i in ka]), torch.tensor(list(ka.values())), rtol=1e-4, atol=1e-4
        )
    torch.testing.assert_close(loaded(x), trained_like_sae(x), rtol=1e-4, atol=1e-4)


def test_round_trip_through_saelens_and_back_is_stable(tmp_path, trained_like_sae):
    first = load_sae(save_qwen_scope(trained_like_sae, tmp_path / "SAE-Res-m-W384-L0_12"))
    first.save(tmp_path / "native")
    second = load_sae(save_qwen_scope(load_sae(tmp_path / "native"), tmp_path / "again-L0_12"))
    x = torch.randn(64, 96)
    torch.testing.assert_close(second.encode_dense(x), first.encode_dense(x), rtol=0, atol=0)


def test_float16_export_is_float16_on_disk(tmp_path, trained_like_sae):
    file = save_qwen_scope(trained_like_sae, tmp_path / "r-L0_12", dtype=torch.float16)
    assert {t.dtype for t in torch.load(file, weights_only=True).values()} == {torch.float16}


def test_refuses_non_topk_and_missing_layer(tmp_path, random_sae_factory):
    with pytest.raises(SAELoadError, match="only holds TopK"):
        save_qwen_scope(random_sae_factory("jumprelu", d_sae=64), tmp_path / "x")
    no_layer = random_sae_factory("topk", d_sae=64, hook_layer=None)
    with pytest.raises(SAELoadError, match="no hook layer"):
        save_qwen_scope(no_layer, tmp_path / "x")
    assert save_qwen_scope(no_layer, tmp_path / "x-L0_16", layer=4).name == "layer4.sae.pt"


def test_loader_still_refuses_pickled_objects(tmp_path):
    # The exported format is tensors only; a .pt carrying arbitrary objects is never unpickled.
    repo = tmp_path / "evil-L0_4"
    repo.mkdir()
    with open(repo / "layer1.sae.pt", "wb") as f:
        pickle.dump({"W_enc": object()}, f)
    with pytest.raises(SAELoadError, match="weights_only"):
        load_sae(repo / "layer1.sae.pt")
