"""Fixtures for the Qwen path (second embedded model `qwen2.5-coder-0.5b`, its shipped SAE at layer 12).

Tests that need the model skip with a reason unless `make qwen` has run (the GGUF is ~490 MB and optional: the
default set-up stays SmolLM2-only). Everything is loaded once per session: the model (~2 GB fp32), the shipped SAE,
the HF engine and, for `vllm`-marked tests, one vLLM engine (~40-160 s to start on a shared 2-core machine).
"""

from __future__ import annotations

import os

import pytest
import torch

QWEN = "qwen2.5-coder-0.5b"
QWEN_SAE = "qwen2.5-coder-0.5b-l12"
LAYER = 12
SETUP_HINT = "qwen2.5-coder-0.5b is not set up: run `make qwen` (fetches, verifies and converts the GGUF)"


def qwen_gguf_path():
    from qscope.models.resolve import EMBEDDED_MODELS
    from qscope.paths import qscope_home

    spec = EMBEDDED_MODELS[QWEN]
    return qscope_home() / spec.home_dir / spec.gguf_file


def qwen_is_set_up() -> bool:
    return qwen_gguf_path().is_file()


@pytest.fixture(scope="session")
def qwen_gguf():
    """The fetched, verified GGUF (skips unless `make qwen` has run)."""
    if not qwen_is_set_up():
        pytest.skip(SETUP_HINT)
    return qwen_gguf_path()


@pytest.fixture(scope="session")
def qwen_lm():
    if not qwen_is_set_up():
        pytest.skip(SETUP_HINT)
    from qscope.models import LanguageModel

    if os.getloadavg()[0] > (os.cpu_count() or 1):
        torch.set_num_threads(1)  # oversubscribed machine: one thread avoids OpenMP spin-waiting (tests/steering)
    return LanguageModel.load(QWEN)


@pytest.fixture(scope="session")
def qwen_sae():
    from qscope.sae import load_sae

    return load_sae(QWEN_SAE)


@pytest.fixture(scope="session")
def qwen_doc_max(qwen_lm, qwen_sae):
    """texts -> [n_texts, d_sae] max activation of every feature per text (position 0 left out, as everywhere)."""

    @torch.no_grad()
    def doc_max(texts):
        res = qwen_lm.residuals(texts, [LAYER])
        out = []
        for i in range(len(texts)):
            mask = res.attention_mask[i].bool().clone()
            mask[0] = False
            out.append(qwen_sae.encode_dense(res.hidden[LAYER][i][mask]).amax(0))
        return torch.stack(out)

    return doc_max


@pytest.fixture(scope="session")
def qwen_hf_engine(qwen_lm, qwen_sae):
    from qscope.generation import make_engine

    # batch_size=1: outputs do not depend on batch composition (left padding changes float rounding).
    return make_engine("hf", lm=qwen_lm, saes={LAYER: qwen_sae}, batch_size=1)


@pytest.fixture(scope="session")
def qwen_vllm_engine(qwen_lm, qwen_sae):
    pytest.importorskip("vllm")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from qscope.generation import make_engine

    engine = make_engine("vllm", lm=qwen_lm, saes={LAYER: qwen_sae}, max_model_len=1024)
    yield engine
    engine.close()
