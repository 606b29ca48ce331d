"""Texts → per-token sparse SAE activations (aligned to token strings) and per-document signatures."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import torch

from qscope.errors import InputError, ShapeMismatchError
from qscope.models import LanguageModel, sae_layer
from qscope.sae import SAE

Pooling = Literal["max", "sum", "binary"]
SINK_NORM_RATIO = 10.0
"""A token whose residual norm exceeds this multiple of its document's median is an attention sink (position 0
always is; SmolLM2 sometimes makes the first real token a second one, bench/README.md). Its SAE codes describe
the sink, not the text, and would top every dashboard, so its features are dropped (the token itself is kept)."""
POOLINGS: tuple[str, ...] = ("max", "sum", "binary")


def drop_norm_outliers(mask: torch.Tensor, hidden: torch.Tensor, ratio: float = SINK_NORM_RATIO) -> torch.Tensor:
    """`mask` less the tokens whose residual norm exceeds `ratio` x the median norm of the masked tokens (attention-
    sink spill-overs: rare tokens at ~100x an ordinary norm, bench/README.md). The batch-level rule of SAE training,
    evaluation, feature statistics and dashboards: left in, one such row outweighs thousands of ordinary tokens in
    an MSE / SST and tops every activation maximum. (FeatureExtractor applies the same ratio per document.)"""
    if not mask.any():
        return mask
    norms = hidden.norm(dim=-1)
    return mask & (norms <= ratio * norms[mask].median())


@dataclass
class DocumentFeatures:
    """One document's SAE activations at one layer.

    `token_indices[t]` / `token_values[t]` are the active latents of token t (value-sorted, zeros dropped).
    """

    text: str
    tokens: list[str]
    token_ids: np.ndarray
    token_indices: list[np.ndarray]
    token_values: list[np.ndarray]
    truncated: bool
    layer: int

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def signature(self, pooling: Pooling = "max", top_n: int = 64) -> tuple[np.ndarray, np.ndarray]:
        return pool_signature(self.token_indices, self.token_values, pooling, top_n)


def pool_signature(
    token_indices: Sequence[np.ndarray], token_values: Sequence[np.ndarray], pooling: Pooling, top_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pool per-token codes into a document signature: (feature_ids int32, feature_values float32), top_n by value.

    max: strongest activation of each feature anywhere in the text; sum: total activation mass (favours
    features that fire on many tokens); binary: number of tokens the feature fired on, the ranking key, stored as
    a count so that "binarized" retrieval can threshold it later.
    """
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if not token_indices:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    idx = np.concatenate(token_indices).astype(np.int64)
    val = np.concatenate(token_values).astype(np.float32)
    if idx.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    uniq, inverse = np.unique(idx, return_inverse=True)
    if pooling == "max":
        pooled = np.zeros(len(uniq), np.float32)
        np.maximum.at(pooled, inverse, val)
    elif pooling == "sum":
        pooled = np.bincount(inverse, weights=val, minlength=len(uniq)).astype(np.float32)
    else:
        pooled = np.bincount(inverse, minlength=len(uniq)).astype(np.float32)
    order = np.lexsort((uniq, -pooled))[:top_n]  # by value desc, ties by id for determinism
    return uniq[order].astype(np.int32), pooled[order]


class DocumentSignature(NamedTuple):
    """One document's pooled signature (`FeatureExtractor.iter_signatures`)."""

    feature_ids: np.ndarray  # int32, value-descending
    feature_values: np.ndarray  # float32
    n_tokens: int
    truncated: bool
    hidden_mean: np.ndarray | None = None
    """float32 [d_model]: the mean residual over the tokens the signature pools (when asked for): the dense view
    `qscope.classify`'s joint probe reads next to the signature."""


@dataclass
class FeatureExtractor:
    """Runs texts through the LM (truncated forward) and SAEs, one SAE per layer."""

    lm: LanguageModel
    saes: dict[int, SAE]
    batch_size: int = 16
    max_length: int | None = None
    skip_special_tokens: bool = True
    _checked: bool = field(default=False, repr=False)

    def __post_init__(self):
        if not self.saes:
            raise InputError("FeatureExtractor needs at least one SAE")
        for layer, sae in self.saes.items():
            self.lm.check_layer(layer)
            if sae.d_in != self.lm.d_model:
                raise ShapeMismatchError(
                    f"SAE {sae.sae_id} has d_in={sae.d_in} but {self.lm.name} has hidden size {self.lm.d_model}"
                )

    @classmethod
    def single(cls, lm: LanguageModel, sae: SAE, layer: int | None = None, **kw) -> FeatureExtractor:
        return cls(lm, {sae_layer(sae, layer): sae}, **kw)

    @property
    def layers(self) -> list[int]:
        return sorted(self.saes)

    def iter_documents(self, texts: Iterable[str], layer: int | None = None) -> Iterator[DocumentFeatures]:
        """Yield DocumentFeatures for `layer` (default: the only / shallowest layer), batching internally."""
        layer = self.layers[0] if layer is None else layer
        if layer not in self.saes:
            raise InputError(f"no SAE loaded for layer {layer} (have {self.layers})")
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) == self.batch_size:
                yield from self.extract(batch)[layer]
                batch = []
        if batch:
            yield from self.extract(batch)[layer]

    def iter_signatures(
        self,
        texts: Iterable[str],
        pooling: Pooling = "max",
        top_n: int = 64,
        layer: int | None = None,
        hidden_mean: bool = False,
    ) -> Iterator[DocumentSignature]:
        """Per text: its pooled signature, tokens read and truncation — `DocumentFeatures.signature()` without the
        per-token Python objects (what a corpus pass needs; equal to it, tested); with `hidden_mean`, also the mean
        residual over the same tokens."""
        layer = self.layers[0] if layer is None else layer
        if layer not in self.saes:
            raise InputError(f"no SAE loaded for layer {layer} (have {self.layers})")
        if pooling not in POOLINGS:
            raise InputError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) == self.batch_size:
                yield from self._signatures(batch, layer, pooling, top_n, hidden_mean)
                batch = []
        if batch:
            yield from self._signatures(batch, layer, pooling, top_n, hidden_mean)

    @torch.no_grad()
    def _signatures(
        self, texts: list[str], layer: int, pooling: str, top_n: int, hidden_mean: bool = False
    ) -> list[DocumentSignature]:
        texts = self.lm.validate_texts(texts)
        res = self.lm.residuals(texts, [layer], self.max_length)
        mask = res.attention_mask.bool()
        hidden = res.hidden[layer][mask]  # real tokens only, document after document
        codes = self.saes[layer].encode(hidden)
        lengths = mask.sum(1).tolist()
        doc = torch.repeat_interleave(torch.arange(len(texts), device=mask.device), mask.sum(1))
        pos = (mask.cumsum(1) - 1)[mask]
        # The same tokens DocumentFeatures drops: position 0 (the sink), special tokens, sink spill-overs (norm over
        # SINK_NORM_RATIO x the document's median norm over positions >= 1).
        norms = hidden.float().norm(dim=-1).cpu().numpy()
        limits, offset = np.full(len(texts), np.inf), 0
        for i, n in enumerate(lengths):
            if n > 1:
                limits[i] = SINK_NORM_RATIO * float(np.median(norms[offset + 1 : offset + n]))
            offset += n
        keep_tok = (pos > 0) & (torch.from_numpy(norms <= limits[doc.cpu().numpy()]).to(pos.device))
        if self.skip_special_tokens:
            special = torch.tensor(sorted(self.lm.tokenizer.all_special_ids), device=pos.device)
            keep_tok &= ~torch.isin(res.input_ids[mask], special)
        vals = codes.values.float()
        keep = (vals > 0) & keep_tok[:, None]
        d_sae = self.saes[layer].d_sae
        flat_index = (doc[:, None] * d_sae + codes.indices)[keep]
        # float64 sums, cast once: the same numbers as pool_signature's bincount
        src = {"max": vals[keep].double(), "sum": vals[keep].double(), "binary": torch.ones_like(vals[keep]).double()}
        pooled = torch.zeros(len(texts) * d_sae, dtype=torch.float64, device=vals.device)
        if pooling == "max":
            pooled.scatter_reduce_(0, flat_index, src["max"], reduce="amax")
        else:
            pooled.index_add_(0, flat_index, src[pooling])
        pooled = pooled.view(len(texts), d_sae).float().cpu().numpy()
        means = self._token_means(hidden, doc, keep_tok, len(texts)) if hidden_mean else None
        out = []
        for i, n in enumerate(lengths):
            ids = np.flatnonzero(pooled[i])
            vals_i = pooled[i, ids]
            order = np.lexsort((ids, -vals_i))[:top_n]  # by value desc, ties by id (as pool_signature)
            out.append(
                DocumentSignature(
                    ids[order].astype(np.int32),
                    vals_i[order].astype(np.float32),
                    max(n - 1, 0),
                    res.truncated[i],
                    None if means is None else means[i],
                )
            )
        return out

    @staticmethod
    def _token_means(hidden: torch.Tensor, doc: torch.Tensor, keep: torch.Tensor, n_docs: int) -> np.ndarray:
        """Per document, the mean residual over its kept tokens (zeros for a document with none)."""
        h = hidden[keep].float()
        sums = torch.zeros(n_docs, h.shape[1], dtype=torch.float64, device=h.device)
        sums.index_add_(0, doc[keep], h.double())
        counts = torch.bincount(doc[keep], minlength=n_docs).clamp(min=1).to(sums.dtype)
        return (sums / counts[:, None]).float().cpu().numpy()

    @torch.no_grad()
    def extract(self, texts: Sequence[str] | str) -> dict[int, list[DocumentFeatures]]:
        texts = self.lm.validate_texts(texts)
        res = self.lm.residuals(texts, self.layers, self.max_length)
        special = set(self.lm.tokenizer.all_special_ids) if self.skip_special_tokens else set()
        out: dict[int, list[DocumentFeatures]] = {layer: [] for layer in self.layers}
        mask = res.attention_mask.bool()
        for layer, sae in self.saes.items():
            hidden = res.hidden[layer][mask]  # only real tokens reach the SAE: padding can never leak
            codes = sae.encode(hidden)
            idx, val = codes.indices.cpu().numpy(), codes.values.float().cpu().numpy()
            norms = hidden.float().norm(dim=-1).cpu().numpy()
            offset = 0
            for i, text in enumerate(texts):
                ids = res.tokens_of(i).cpu().numpy()
                n = len(ids)
                t_idx, t_val = [], []
                doc_norms = norms[offset + 1 : offset + n]
                sink_limit = SINK_NORM_RATIO * float(np.median(doc_norms)) if n > 1 else np.inf
                # Position 0 is the attention sink (a BOS the LM prepended, else the first token): skipped.
                for t in range(1, n):
                    row_v, row_i = val[offset + t], idx[offset + t]
                    keep = row_v > 0
                    if ids[t] in special or norms[offset + t] > sink_limit:
                        keep[:] = False  # special tokens and sinks carry no content features
                    order = np.argsort(-row_v[keep], kind="stable")
                    t_idx.append(row_i[keep][order].astype(np.int32))
                    t_val.append(row_v[keep][order].astype(np.float32))
                offset += n
                out[layer].append(
                    DocumentFeatures(
                        text, self.lm.token_strings(ids[1:]), ids[1:], t_idx, t_val, res.truncated[i], layer
                    )
                )
        return out
