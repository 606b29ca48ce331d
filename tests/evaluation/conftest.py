"""Fixtures for evaluation tests: short real texts and planted SAEs whose metrics are known exactly.

The embedded LM itself comes from the session-scoped `lm` fixture in tests/conftest.py (loaded once per run).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qscope.sae import SAE, SAEConfig

REPO = Path(__file__).resolve().parents[2]
DEMO_CORPUS = REPO / "data" / "demo" / "corpus.jsonl"
LAYER = 15


@pytest.fixture(scope="session")
def demo_texts() -> list[str]:
    """A few short real texts (Debian descriptions shipped in the repo), ~25-45 tokens each."""
    texts = [json.loads(line)["text"] for line in DEMO_CORPUS.read_text().splitlines() if line.strip()]
    short = [t for t in texts if 100 <= len(t) <= 200]
    return short[:5]


def identity_sae(d_in: int, n_dead: int = 0, n_always_on: int = 0, layer: int = LAYER) -> SAE:
    """ReLU SAE with W_enc = [I, −I], W_dec = [I; −I], no bias: relu(x) − relu(−x) = x, exact reconstruction.

    n_dead extra latents can never fire (zero encoder column, b_enc = −1); n_always_on extra latents always
    fire (b_enc = +1) but decode to nothing (zero decoder row).
    """
    d_sae = 2 * d_in + n_dead + n_always_on
    sae = SAE.from_config(
        SAEConfig("relu", d_in, d_sae, hook_layer=layer, sae_id="planted/identity", model_name="smollm2-135m")
    )
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_dec.zero_()
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_enc[:, : 2 * d_in] = torch.cat([eye, -eye], dim=1)
        sae.W_dec[: 2 * d_in] = torch.cat([eye, -eye], dim=0)
        sae.b_enc[2 * d_in : 2 * d_in + n_dead] = -1.0
        sae.b_enc[2 * d_in + n_dead :] = 1.0
    return sae


def zero_sae(d_in: int, layer: int = LAYER) -> SAE:
    """TopK SAE whose decoder is all zero: reconstruction = b_dec = 0, i.e. zero ablation."""
    torch.manual_seed(0)
    sae = SAE.from_config(SAEConfig("topk", d_in, 256, k=8, hook_layer=layer, sae_id="planted/zero"))
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_dec.zero_()
    return sae


def random_topk_sae(d_in: int, d_sae: int = 512, k: int = 16, layer: int = LAYER, seed: int = 0) -> SAE:
    torch.manual_seed(seed)
    sae = SAE.from_config(SAEConfig("topk", d_in, d_sae, k=k, hook_layer=layer, sae_id=f"random/topk-{seed}"))
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.1)
    return sae


@pytest.fixture(scope="session")
def planted():
    """The planted-SAE builders above, for test modules (they cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(identity=identity_sae, zero=zero_sae, random_topk=random_topk_sae, layer=LAYER)
