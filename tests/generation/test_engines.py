"""The engine interface shared by HF and vLLM: make_engine, prompt encoding, stop tokens, input checks."""

from __future__ import annotations

import json

import pytest

from qscope.errors import InputError, QscopeError
from qscope.generation import GenerationResult, make_engine


@pytest.fixture(scope="module")
def engine(lm):
    return make_engine("hf", lm=lm, batch_size=2)


def test_unknown_engine():
    with pytest.raises(InputError, match="unknown engine"):
        make_engine("tgi")


def test_chat_template_and_raw_prompts(engine, lm):
    chat = engine.encode_prompt("Hello there", chat=True)
    raw = engine.encode_prompt("Hello there", chat=False)
    assert len(chat) > len(raw)
    assert "Hello there" in lm.tokenizer.decode(chat) and "assistant" in lm.tokenizer.decode(chat)


def test_generate_shape_and_stop(engine):
    out = engine.generate(["What is 2 + 2?", "Name a colour.", "Say hi."], max_new_tokens=6)
    assert len(out) == 3 and all(isinstance(r, GenerationResult) for r in out)
    for r in out:
        assert len(r.token_ids) <= 6 and not set(r.token_ids) & set(engine.stop_token_ids)
        assert r.finish_reason in ("stop", "length")
        assert json.loads(json.dumps(r.to_dict()))["text"] == r.text
    # greedy and batching with padding: a lone prompt gives the same tokens as inside a padded batch here
    assert engine.generate(["Say hi."], max_new_tokens=6)[0].token_ids == out[2].token_ids


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 0}, {"temperature": -1.0}, {"temperature": float("nan")}])
def test_bad_generation_args(engine, kwargs):
    with pytest.raises(QscopeError):
        engine.generate(["hi"], **kwargs)


def test_no_sae_means_steering_is_refused(engine):
    from qscope.steering import MissingSAEError, activate

    with pytest.raises(MissingSAEError):
        engine.generate(["hi"], intervention=activate(1))
