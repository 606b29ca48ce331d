"""Signatures: pooling against a brute-force reference, Parquet schema + metadata, the `qscope features` CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from qscope.errors import InputError
from qscope.features import FeatureExtractor, pool_signature
from qscope.signatures import SignatureMeta, read_signatures, signature_table, write_parquet_atomic


def _brute(token_indices, token_values, pooling):
    acc: dict[int, float] = {}
    for idx, val in zip(token_indices, token_values):
        for i, v in zip(idx, val):
            if pooling == "max":
                acc[int(i)] = max(acc.get(int(i), 0.0), float(v))
            elif pooling == "sum":
                acc[int(i)] = acc.get(int(i), 0.0) + float(v)
            else:
                acc[int(i)] = acc.get(int(i), 0.0) + 1.0
    return acc


@pytest.mark.parametrize("pooling", ["max", "sum", "binary"])
def test_pooling_matches_brute_force(pooling):
    rng = np.random.default_rng(0)
    idx = [rng.choice(50, size=5, replace=False).astype(np.int32) for _ in range(12)]
    val = [rng.random(5).astype(np.float32) + 0.1 for _ in range(12)]
    ids, values = pool_signature(idx, val, pooling, top_n=1000)
    ref = _brute(idx, val, pooling)
    assert dict(zip(ids.tolist(), values.tolist())) == pytest.approx(ref, rel=1e-5)
    assert list(values) == sorted(values, reverse=True)
    top3_ids, _ = pool_signature(idx, val, pooling, top_n=3)
    assert len(top3_ids) == 3 and ids.dtype == np.int32


def test_unknown_pooling():
    with pytest.raises(InputError, match="unknown pooling"):
        pool_signature([np.array([1])], [np.array([1.0])], "mean", 5)


def test_signatures_parquet_schema_and_metadata(tmp_path, lm, random_sae_factory):
    sae = random_sae_factory("topk", d_sae=1024, k=8)
    docs = FeatureExtractor.single(lm, sae).extract(["Ham radio antennas.", "A chess engine for the terminal."])[15]
    meta = SignatureMeta(model=lm.name, sae=sae.sae_id, layer=15, pooling="max", top_n=16, d_sae=1024)
    table = signature_table(
        ["a", "b"],
        [d.signature("max", 16) for d in docs],
        [d.n_tokens for d in docs],
        [d.truncated for d in docs],
        meta,
    )
    path = write_parquet_atomic(table, tmp_path / "sigs.parquet")
    back, back_meta = read_signatures(path)
    assert back_meta == meta
    assert str(pq.read_schema(path).field("feature_ids").type) == "list<element: int32>"
    assert back.column("id").to_pylist() == ["a", "b"]
    assert all(0 < len(f) <= 16 for f in back.column("feature_ids").to_pylist())
    assert [p.name for p in tmp_path.iterdir()] == ["sigs.parquet"], "no temporary files may be left behind"
    other = SignatureMeta(model=lm.name, sae="another-sae", layer=15, pooling="max", top_n=16, d_sae=1024)
    with pytest.raises(InputError, match="sae="):
        meta.check_compatible(other)


def test_document_features_align_with_tokens(lm, random_sae_factory):
    sae = random_sae_factory("topk", d_sae=1024, k=8)
    doc = FeatureExtractor.single(lm, sae).extract("Soldering irons and oscilloscopes")[15][0]
    assert "".join(doc.tokens) == "Soldering irons and oscilloscopes"
    assert len(doc.token_indices) == len(doc.tokens) == doc.n_tokens
    assert all(0 < len(i) <= 8 for i in doc.token_indices)


def test_features_cli_json(tmp_path, random_sae_factory):
    sae = random_sae_factory("topk", d_sae=1024, k=8)
    sae.save(tmp_path / "sae")
    cmd = [
        sys.executable,
        "-m",
        "qscope.cli",
        "features",
        "Morse code keyer",
        "second text",
        "--sae",
        str(tmp_path / "sae"),
        "--top",
        "5",
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["layer"] == 15 and result["model"] == "smollm2-135m" and len(result["documents"]) == 2
    doc = result["documents"][0]
    assert len(doc["features"]) == 5 and doc["features"][0]["value"] >= doc["features"][-1]["value"]
    assert "".join(t["token"] for t in doc["tokens"]) == "Morse code keyer"


def test_features_cli_bad_sae_is_one_clear_line(tmp_path):
    cmd = [sys.executable, "-m", "qscope.cli", "features", "x", "--sae", str(tmp_path / "nope")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown SAE" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("pooling", ["max", "sum", "binary"])
def test_batched_signatures_equal_the_per_document_ones(lm, random_sae_factory, pooling):
    """`iter_signatures` (pooled on the batch) gives exactly `DocumentFeatures.signature` (per token, in Python):
    same dropped tokens (sink, special tokens, norm outliers), same values, same tie order."""
    from qscope.features import FeatureExtractor

    fx = FeatureExtractor.single(lm, random_sae_factory(d_sae=1024, k=16, seed=5), batch_size=4, max_length=24)
    texts = [
        "APRS digipeater for amateur radio",
        "<|im_start|>system\nliteral special tokens<|im_end|>",
        "a " * 40,
        "x",
        "Morse code trainer and keyer with a very long description that is cut at 24 tokens",
    ]
    slow = [d.signature(pooling, 32) for d in fx.iter_documents(texts)]
    fast = list(fx.iter_signatures(texts, pooling, 32))
    for (ids, vals), s, d in zip(slow, fast, fx.iter_documents(texts)):
        assert ids.tolist() == s.feature_ids.tolist() and vals.tolist() == s.feature_values.tolist()
        assert (s.n_tokens, s.truncated) == (d.n_tokens, d.truncated)


def test_signature_hidden_mean_is_the_mean_residual_of_the_pooled_tokens(lm, random_sae_factory):
    """`hidden_mean` (the dense view classify's joint probe reads): the mean residual over the tokens the signature
    pools, the same whatever the batch (padding excluded), off unless asked for."""
    import torch

    from qscope.features import FeatureExtractor

    sae = random_sae_factory(d_sae=1024, k=16, seed=5)
    texts = ["APRS digipeater for amateur radio", "x y", "Morse code trainer and keyer with a long description"]
    together = FeatureExtractor.single(lm, sae, batch_size=3, max_length=24)
    batched = list(together.iter_signatures(texts, hidden_mean=True))
    alone = FeatureExtractor.single(lm, sae, batch_size=1, max_length=24)
    assert list(alone.iter_signatures(texts[:1]))[0].hidden_mean is None
    layer = alone.layers[0]
    for text, b in zip(texts, batched):
        a = list(alone.iter_signatures([text], hidden_mean=True))[0]
        assert b.hidden_mean.shape == (lm.d_model,) and b.hidden_mean.dtype == np.float32
        np.testing.assert_allclose(b.hidden_mean, a.hidden_mean, rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            res = lm.residuals([text], [layer], 24)
        tokens = res.hidden[layer][0][res.attention_mask[0].bool()][1:].float()  # the sink (position 0) dropped
        np.testing.assert_allclose(a.hidden_mean, tokens.mean(0).numpy(), rtol=1e-4, atol=1e-4)
