"""Streaming activations from the real default LM (slow: runs SmolLM2 on CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from qscope.training import TrainConfig, Trainer
from qscope.training.activations import token_mask

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Debian ships free software for many architectures.",
    "A ham radio logging program with rig control.",
    "Photosynthesis turns light into chemical energy.",
    "The stock market fell sharply on Tuesday.",
    "Python is a programming language that lets you work quickly.",
] * 3


@pytest.mark.slow
def test_streaming_trains_and_resumes_identically(lm, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))

    def config(out):
        return TrainConfig(
            layers=[3, 5],
            corpus=str(corpus),
            split=None,
            batch_size=64,
            max_tokens=64 * 6,
            stream_window=8,
            heldout_split=None,
            heldout_tokens=128,
            out=str(tmp_path / out),
            checkpoint_every=0,
            progress=False,
            num_threads=1,
            sae={"d_sae": 128, "k": 8, "lr": 3e-3, "warmup_steps": 2},
        )

    straight = Trainer(config("a"), lm=lm)
    result = straight.fit()
    assert set(result.exported) == {3, 5}  # two layers from one LM forward per window
    paused = Trainer(config("b"), lm=lm)
    paused.fit(stop_at=3, export=False)
    resumed = Trainer(config("b"), lm=lm)
    resumed.fit(resume=True, export=False)
    for layer in (3, 5):
        for name, p in straight.saes[layer].state_dict().items():
            assert torch.equal(p, resumed.saes[layer].state_dict()[name]), (layer, name)


def test_token_mask_drops_sink_padding_and_massive_outliers():
    attn = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    hidden = torch.ones(2, 5, 4)
    hidden[1, 1] *= 500  # a sink spilling onto position 1
    mask = token_mask(attn, {7: hidden})
    assert mask.tolist() == [[False, True, True, True, False], [False, False, True, True, True]]
