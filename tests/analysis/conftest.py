"""Fixtures for the analysis tests: a planted SAE (one latent known to fire on code), its activations on a few
texts, and the shipped default SAE when present. The LM comes from the session fixture in tests/conftest.py."""

from __future__ import annotations

import shutil

import pytest

CODE = [
    "def add(a, b):\n    return a + b",
    "for i in range(10):\n    print(i * i)",
    "import os\nfiles = os.listdir('.')",
    "class Point:\n    def __init__(self, x):\n        self.x = x",
    "if x > 0:\n    y = x ** 2\nelse:\n    y = -x",
    "def main():\n    args = parse()\n    run(args)",
    "while True:\n    line = f.readline()\n    if not line: break",
    "result = [x for x in items if x % 2 == 0]",
    "try:\n    value = int(s)\nexcept ValueError:\n    value = 0",
    "with open(path) as f:\n    data = json.load(f)",
]
PROSE = [
    "The weather in the mountains was cold and windy all week.",
    "She walked to the market to buy fresh bread and apples.",
    "Our family spent the summer holiday at a quiet lake.",
    "The museum opens at nine and closes late on Fridays.",
    "He told a long story about his grandfather's farm.",
    "The choir sang beautifully at the winter concert.",
    "Rain fell softly on the roof while the children slept.",
    "The old bridge over the river was rebuilt last year.",
    "They planted tomatoes and roses in the back garden.",
    "A small cat slept in the sun by the window.",
]
PLANT = (CODE[:4], PROSE[:4])  # texts that define the planted direction
HELD_OUT = (CODE[4:], PROSE[4:])  # texts discovery must recover it from
PLANTED_FEATURE = 37


@pytest.fixture(scope="session", autouse=True)
def one_thread_when_oversubscribed():
    """On an oversubscribed machine (load > cores), torch's intra-op threads spin at barriers: measured here with
    load ~16 on 2 cores, one 5-token forward of the default LM took 6.8 s with 2 threads and 0.97 s with 1.
    Session scope so the session fixtures below (planted SAE, activations) run under it too; the setting is
    restored at the end of the session and never changed on a machine with free cores."""
    import os

    import torch

    before = torch.get_num_threads()
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data():
    """The test texts and the planted feature id, as one namespace (test modules do not import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(CODE=CODE, PROSE=PROSE, PLANT=PLANT, HELD_OUT=HELD_OUT, PLANTED=PLANTED_FEATURE)


@pytest.fixture(scope="session")
def planted_sae(lm):
    """A TopK SAE on layer 15 whose latent PLANTED_FEATURE reads the code-vs-prose direction.

    Other latents are random unit directions. The planted encoder column is the (unit) difference of mean token
    residuals of code and prose, scaled and biased so it fires on code tokens and stays off on prose.
    """
    import numpy as np
    import torch

    from qscope.sae import SAE, SAEConfig

    def token_residuals(texts):
        res = lm.residuals(texts, [15], max_length=48)
        mask = res.attention_mask.bool().clone()
        mask[:, 0] = False
        return res.hidden[15][mask].float()

    pos, neg = token_residuals(PLANT[0]), token_residuals(PLANT[1])
    u = pos.mean(0) - neg.mean(0)
    u = u / u.norm()
    mid = float(((pos @ u).mean() + (neg @ u).mean()) / 2)
    torch.manual_seed(0)
    cfg = SAEConfig(
        "topk", d_in=lm.d_model, d_sae=256, k=8, hook_layer=15, sae_id="test/planted", model_name="smollm2-135m"
    )
    sae = SAE.from_config(cfg)
    with torch.no_grad():
        sae.b_enc.zero_()
        sae.W_enc[:, PLANTED_FEATURE] = 5 * u
        sae.b_enc[PLANTED_FEATURE] = -5 * mid
        sae.W_dec[PLANTED_FEATURE] = u
    assert np.isfinite(mid)
    return sae


@pytest.fixture(scope="session")
def planted_acts(lm, planted_sae):
    from qscope.analysis import CorpusActivations

    return CorpusActivations.collect(lm, planted_sae, CODE + PROSE, max_length=48)


@pytest.fixture(scope="session")
def default_sae():
    from qscope.sae import DEFAULT_SAE_ID, load_sae, shipped_sae_ids

    if DEFAULT_SAE_ID not in shipped_sae_ids():
        pytest.skip(f"the default SAE {DEFAULT_SAE_ID} is not shipped in qscope/assets/saes yet")
    return load_sae(DEFAULT_SAE_ID)


@pytest.fixture(scope="session")
def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium); the dashboard browser test needs it")
