"""LM residual activations for SAE training: truncated forward, attention sink and padding removed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch

from qscope.features import drop_norm_outliers
from qscope.training.text import length_buckets


class ActivationBatch(NamedTuple):
    """Real-token activations of one LM batch; rows aligned across layers."""

    acts: dict[int, torch.Tensor]  # layer -> [n_tokens, d_model] float32
    n_texts: int


def token_mask(
    attention_mask: torch.Tensor, hidden: dict[int, torch.Tensor] | None = None, max_norm_ratio: float | None = 10.0
) -> torch.Tensor:
    """Positions that may train an SAE: real tokens, not position 0, not a massive-activation outlier.

    Position 0 is an attention sink whose residual norm is ~100x the rest; FeatureExtractor never encodes it. The
    sink sometimes spills onto position 1 or 2 (rare, at norms ~10-100x the 99th percentile: bench/README.md,
    "Measurements behind the code"). One such row carries more squared norm than
    a whole 4096-token batch, so it would dominate the MSE, the normalization scale and the batch's explained
    variance; tokens whose norm exceeds `max_norm_ratio` x the batch median (at any requested layer) are dropped.
    """
    mask = attention_mask.bool().clone()
    mask[:, 0] = False
    if hidden and max_norm_ratio:
        for h in hidden.values():
            mask = drop_norm_outliers(mask, h, max_norm_ratio)
    return mask


@torch.no_grad()
def iter_lm_activations(
    lm,
    texts: Sequence[str],
    layers: Sequence[int],
    max_length: int = 256,
    batch_tokens: int = 4096,
    window: int = 2048,
) -> Iterator[ActivationBatch]:
    """Yield activations of `texts` (in windows of `window` texts, length-bucketed inside each window)."""
    layers = sorted({lm.check_layer(int(layer)) for layer in layers})
    tok = lm.tokenizer
    for start in range(0, len(texts), window):
        chunk = list(texts[start : start + window])
        # +1 for the BOS the LM prepends; lengths only steer bucketing, truncation is done by lm.residuals.
        lengths = [len(ids) + 1 for ids in tok(chunk, add_special_tokens=True)["input_ids"]]
        for idx in length_buckets(lengths, batch_tokens, max_length):
            res = lm.residuals([chunk[i] for i in idx], layers, max_length=max_length)
            mask = token_mask(res.attention_mask, res.hidden)
            yield ActivationBatch({layer: res.hidden[layer][mask].float() for layer in layers}, len(idx))
