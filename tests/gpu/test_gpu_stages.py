"""GPU-real model stages (marker `gpu`; skipped without CUDA): an encode actor's model on the GPU (bf16 by default,
only the blocks up to the hook layer) reads the same features as on the CPU."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _texts(n=48):
    return [json.loads(x)["text"] for x in open("data/demo/corpus.jsonl")][:n]


def _overlap(a, b, k=32):
    sa, sb = set(a[:k].tolist()), set(b[:k].tolist())
    return len(sa & sb) / max(1, len(sa | sb))


@pytest.mark.parametrize("dtype,min_overlap", [("float32", 0.95), ("auto", 0.7)])
def test_gpu_signatures_match_cpu(dtype, min_overlap):
    from qscope.operators import EncodeSignatures
    from qscope.operators.base import load_model_and_sae

    texts = _texts()
    cpu = EncodeSignatures(model_spec={"device": "cpu", "max_length": 64}, pooling="max", top_n=64).signatures(texts)
    gpu_op = EncodeSignatures(model_spec={"device": "auto", "dtype": dtype, "max_length": 64}, pooling="max", top_n=64)
    gpu = gpu_op.signatures(texts)
    lm, sae, layer = load_model_and_sae(gpu_op.model_spec, features_only=True)
    assert lm.device.type == "cuda" and sae.W_enc.device.type == "cuda"
    assert lm.n_layers == layer + 1  # only the blocks the features need
    if dtype == "auto":
        assert next(lm.model.parameters()).dtype == torch.bfloat16
    overlaps = [_overlap(a.feature_ids, b.feature_ids) for a, b in zip(cpu, gpu)]
    assert np.mean(overlaps) >= min_overlap, overlaps
    assert [a.n_tokens for a in cpu] == [b.n_tokens for b in gpu]
