"""Generation engines behind one interface: `make_engine("hf" | "vllm", ...)` -> `GenerationEngine`.

    engine = make_engine("hf", lm=lm, saes={15: sae})
    results = engine.generate(prompts, intervention=None, max_new_tokens=64, temperature=0.0, seed=0, chat=True)
    results = engine.generate(prompts, intervention=[iv_a, None, iv_b])  # one intervention per prompt
    engine.close()

Both engines take the same token ids (prompts are rendered and tokenized once, in `base.py`), stop on the same
tokens, and steer with the same tensors, so greedy outputs agree token for token (tests/steering). vLLM is
imported only when the vllm engine is built.
"""

from __future__ import annotations

from qscope.errors import InputError
from qscope.generation.base import GenerationEngine, GenerationResult
from qscope.generation.engine_config import resolve_engine_kwargs

ENGINES = ("hf", "vllm")


def make_engine(kind: str = "hf", **kwargs) -> GenerationEngine:
    """kind "hf": HFEngine(lm=None, saes=None, model=None, batch_size=16, scales=None, feature_stats=None).
    kind "vllm": VLLMEngine(model=None, saes=None, lm=None, dtype=None, max_model_len=2048, seed=0, ...,
    **vllm_settings); settings are checked by `resolve_engine_kwargs` (dtype default: bf16 on GPU, fp32 on CPU).

    scales: {layer: {feature: typical max}} explicit strength units; feature_stats: {layer: FeatureStats or the
    SAE directory / shipped id to load them from} (default: looked up by SAE id; see steering.calibration)."""
    if kind == "hf":
        from qscope.generation.hf_engine import HFEngine

        return HFEngine(**kwargs)
    if kind == "vllm":
        from qscope.generation.vllm_engine import VLLMEngine

        return VLLMEngine(**kwargs)
    raise InputError(f"unknown engine {kind!r}; choose one of {ENGINES}")


__all__ = ["ENGINES", "GenerationEngine", "GenerationResult", "make_engine", "resolve_engine_kwargs"]
