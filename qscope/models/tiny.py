"""A tiny random language model and SAE: what tests and benchmarks use when the model itself must cost nothing
(pipeline scale, fault tolerance), built offline from the embedded model's tokenizer."""

from __future__ import annotations

from pathlib import Path


def make_tiny_lm(path: str | Path, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random Llama (width `hidden_size`, `layers` blocks) with SmolLM2's tokenizer, saved at `path` (reused
    when it is already there). `LanguageModel.load(path)` reads it like any model directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from qscope.models.resolve import embedded_model_dir

    path = Path(path)
    if not (path / "config.json").exists():
        tok = AutoTokenizer.from_pretrained(embedded_model_dir("smollm2-135m"))
        torch.manual_seed(seed)
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        LlamaForCausalLM(cfg).save_pretrained(path)
        tok.save_pretrained(path)
    return path


def make_tiny_sae(
    path: str | Path, model_dir: str | Path, d_in: int = 64, d_sae: int = 512, k: int = 8, layer: int = 1, seed: int = 1
) -> Path:
    """A random TopK SAE on block `layer` of the tiny model at `model_dir` (recorded as its model)."""
    import torch

    from qscope.sae import SAE, SAEConfig

    path = Path(path)
    if not (path / "cfg.json").exists():
        torch.manual_seed(seed)
        SAE.from_config(
            SAEConfig(
                architecture="topk",
                d_in=d_in,
                d_sae=d_sae,
                k=k,
                hook_layer=layer,
                sae_id="tiny/topk",
                model_name=str(model_dir),
            )
        ).save(path)
    return path
