"""Session-wide fixtures: the embedded default LM is loaded once per test run; nothing reaches the network."""

from __future__ import annotations

import os

import pytest

# No Hugging Face hub at test time: loading code is exercised on what we make or ship.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def lm():
    from qscope.models import LanguageModel

    return LanguageModel.load()


@pytest.fixture(scope="session")
def random_sae_factory():
    """Build small random SAEs on the default model's width (deterministic per seed)."""
    import torch

    from qscope.sae import SAE, SAEConfig

    def make(architecture="topk", d_in=576, d_sae=1024, k=16, hook_layer=15, seed=0, **kw):
        torch.manual_seed(seed)
        cfg = SAEConfig(architecture=architecture, d_in=d_in, d_sae=d_sae, k=k if architecture == "topk" else None,
                        hook_layer=hook_layer, sae_id=f"test/{architecture}-{seed}", model_name="smollm2-135m", **kw)
        sae = SAE.from_config(cfg)
        with torch.no_grad():
            sae.b_enc.normal_(0, 0.01)
            sae.b_dec.normal_(0, 0.01)
            if architecture == "jumprelu":
                sae.threshold.uniform_(0.0, 0.5)
        return sae

    return make
