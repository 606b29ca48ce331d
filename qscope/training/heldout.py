"""Held-out activations for threshold calibration and final metrics (from a cache or streamed from the LM)."""

from __future__ import annotations

import torch

from qscope.errors import InputError


def heldout_activations(trainer) -> dict[int, torch.Tensor]:
    """`cfg.heldout_tokens` raw activations per layer: held-out cache, else the corpus' held-out split, else a
    fresh sample of the training data (only when nothing held out exists; recorded as such by the caller)."""
    cfg = trainer.cfg
    if cfg.heldout_cache:
        from qscope.training.sources import CacheSource

        src = CacheSource(cfg.heldout_cache, cfg.layers, cfg.batch_size, cfg.seed)
        return src.sample(cfg.heldout_tokens, cfg.seed)
    if cfg.corpus and cfg.heldout_split:
        from qscope.training.activations import iter_lm_activations
        from qscope.training.text import read_texts

        try:
            texts = read_texts(cfg.corpus, cfg.heldout_split)
        except InputError:
            texts = []
        if texts:
            lm = trainer._lm()
            parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in cfg.layers}
            n, window = 0, 256
            # Whole windows only, then a random subset: iter_lm_activations yields each window's texts shortest
            # first, so stopping mid-window would measure only the shortest texts (an optimistic, biased sample).
            for start in range(0, len(texts), window):
                for batch in iter_lm_activations(
                    lm, texts[start : start + window], cfg.layers, cfg.max_length, window=window
                ):
                    for layer in cfg.layers:
                        parts[layer].append(batch.acts[layer])
                    n += len(batch.acts[cfg.layers[0]])
                if n >= cfg.heldout_tokens:
                    break
            g = torch.Generator().manual_seed(cfg.seed)
            pick = torch.randperm(n, generator=g)[: cfg.heldout_tokens]
            return {layer: torch.cat(p)[pick] for layer, p in parts.items()}
    return trainer.source.sample(cfg.heldout_tokens, cfg.seed + 1)
