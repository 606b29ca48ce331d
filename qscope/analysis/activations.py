"""`CorpusActivations`: every token's sparse SAE code over a small corpus, the one table the analysis reads.

Discovery needs per-document pooled activations, labels and dashboards need per-token contexts, histograms and
densities. All of them come from one pass of the LM + SAE over the texts, kept as a sparse token × latent matrix
(CSR; a column view is built on demand) with document offsets, so nothing is recomputed per feature.
Position 0 (the attention sink) and special tokens are dropped as in `FeatureExtractor`; so are secondary sinks
(tokens with an outlier residual norm, see `collect`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from qscope.errors import InputError

log = logging.getLogger(__name__)


class Context(NamedTuple):
    """One place a feature fired: a window of a document's tokens with that feature's value on each."""

    doc: int
    position: int  # index of the max token within `tokens` (window-relative)
    value: float
    tokens: list[str]
    values: list[float]

    @property
    def token(self) -> str:
        return self.tokens[self.position]


@dataclass
class CorpusActivations:
    """Per-token SAE activations of `texts` at one layer.

    `token_acts[t, f]` is latent f on token t; the tokens of document d are rows
    `doc_offsets[d]:doc_offsets[d + 1]` and their strings are `tokens[d]`.
    """

    texts: list[str]
    tokens: list[list[str]]
    doc_offsets: np.ndarray
    token_acts: sp.csr_matrix
    layer: int
    sae_id: str
    _csc: sp.csc_matrix | None = field(default=None, repr=False)

    # --- construction ---------------------------------------------------------------------------------
    @classmethod
    def collect(
        cls,
        lm,
        sae,
        texts: Sequence[str],
        layer: int | None = None,
        max_length: int = 256,
        batch_size: int = 16,
        sink_factor: float = 10.0,
    ) -> CorpusActivations:
        """Read `texts` through the LM (truncated forward) and the SAE.

        As in `FeatureExtractor`, position 0 (the attention sink) and special tokens are skipped. In addition any
        token whose residual norm exceeds `sink_factor` x the batch's median token norm gets no activations: the
        first real token of some texts is a second sink (SmolLM2 layer 15: "LL" opening a text had norm 6116 vs
        ~190 for its neighbours) and, left in, it tops the contexts of hundreds of unrelated features.
        """
        import torch

        from qscope.features import drop_norm_outliers
        from qscope.models import sae_layer

        texts = lm.validate_texts(texts)
        layer = sae_layer(sae, layer)
        special = torch.tensor(sorted(lm.tokenizer.all_special_ids))
        rows, cols, vals, tokens, offsets = [], [], [], [], [0]
        n, n_sinks = 0, 0
        for start in range(0, len(texts), batch_size):
            with torch.no_grad():
                res = lm.residuals(texts[start : start + batch_size], [layer], max_length)
                real = res.attention_mask.bool().clone()
                real[:, 0] = False  # position 0: the attention sink (and the prepended BOS)
                keep = real & ~torch.isin(res.input_ids.cpu(), special).to(real.device)
                hidden = res.hidden[layer]
                no_sinks = drop_norm_outliers(keep, hidden.float(), sink_factor)
                n_sinks += int((keep & ~no_sinks).sum())
                keep = no_sinks
                codes = sae.encode(hidden[keep])
            idx, val = codes.indices.cpu().numpy(), codes.values.float().cpu().numpy()
            keep_np, real_np = keep.cpu().numpy(), real.cpu().numpy()
            row_of_kept = 0
            for i in range(keep_np.shape[0]):
                ids = res.input_ids[i][res.attention_mask[i].bool()].cpu().numpy()
                positions = np.flatnonzero(real_np[i])  # 1..len-1: every token after the sink has a row
                for t, pos in enumerate(positions):
                    if keep_np[i, pos]:
                        v, c = val[row_of_kept], idx[row_of_kept]
                        nz = v > 0
                        rows.append(np.full(int(nz.sum()), n + t, np.int64))
                        cols.append(c[nz].astype(np.int64))
                        vals.append(v[nz].astype(np.float32))
                        row_of_kept += 1
                n += len(positions)
                offsets.append(n)
                tokens.append(lm.token_strings(ids[1:]))

        def cat(xs, dt):
            return np.concatenate(xs) if xs else np.zeros(0, dt)

        acts = sp.csr_matrix(
            (cat(vals, np.float32), (cat(rows, np.int64), cat(cols, np.int64))), shape=(n, sae.d_sae), dtype=np.float32
        )
        acts.sum_duplicates()
        log.info(
            "collected %d tokens of %d texts at layer %d (nnz %d, %d sink tokens skipped)",
            n,
            len(texts),
            layer,
            acts.nnz,
            n_sinks,
        )
        return cls(list(texts), tokens, np.asarray(offsets, np.int64), acts, layer, sae.sae_id)

    def save(self, path: str | Path) -> Path:
        import json

        from qscope.paths import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    data=self.token_acts.data,
                    indices=self.token_acts.indices,
                    indptr=self.token_acts.indptr,
                    shape=np.asarray(self.token_acts.shape),
                    doc_offsets=self.doc_offsets,
                    meta=np.frombuffer(
                        json.dumps(
                            {"texts": self.texts, "tokens": self.tokens, "layer": self.layer, "sae_id": self.sae_id}
                        ).encode(),
                        np.uint8,
                    ),
                )
        return path

    @classmethod
    def load(cls, path: str | Path) -> CorpusActivations:
        import json

        z = np.load(path)
        meta = json.loads(z["meta"].tobytes().decode())
        acts = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return cls(meta["texts"], meta["tokens"], z["doc_offsets"], acts, meta["layer"], meta["sae_id"])

    @classmethod
    def concat(cls, parts: Sequence[CorpusActivations]) -> CorpusActivations:
        """Documents of several tables (same SAE and layer) in order."""
        if not parts or len({(p.sae_id, p.layer, p.d_sae) for p in parts}) != 1:
            raise InputError("concat needs one or more tables of the same SAE and layer")
        offsets = [parts[0].doc_offsets]
        for p in parts[1:]:
            offsets.append(p.doc_offsets[1:] + offsets[-1][-1])
        return cls(
            [t for p in parts for t in p.texts],
            [t for p in parts for t in p.tokens],
            np.concatenate(offsets),
            sp.vstack([p.token_acts for p in parts]).tocsr(),
            parts[0].layer,
            parts[0].sae_id,
        )

    # --- shapes ---------------------------------------------------------------------------------------
    @property
    def n_docs(self) -> int:
        return len(self.texts)

    @property
    def n_tokens(self) -> int:
        return int(self.token_acts.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.token_acts.shape[1])

    def subset(self, docs: Sequence[int]) -> CorpusActivations:
        """The same table restricted to some documents (e.g. a held-out split)."""
        docs = list(docs)
        rows = np.concatenate([np.arange(self.doc_offsets[d], self.doc_offsets[d + 1]) for d in docs]) if docs else []
        lengths = [int(self.doc_offsets[d + 1] - self.doc_offsets[d]) for d in docs]
        return CorpusActivations(
            [self.texts[d] for d in docs],
            [self.tokens[d] for d in docs],
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            self.token_acts[np.asarray(rows, np.int64)],
            self.layer,
            self.sae_id,
        )

    # --- views ----------------------------------------------------------------------------------------
    @property
    def csc(self) -> sp.csc_matrix:
        if self._csc is None:
            self._csc = self.token_acts.tocsc()
        return self._csc

    def check_feature(self, feature: int) -> int:
        feature = int(feature)
        if not 0 <= feature < self.d_sae:
            raise InputError(f"feature {feature} out of range: the SAE has features 0..{self.d_sae - 1}")
        return feature

    def feature_tokens(self, feature: int) -> tuple[np.ndarray, np.ndarray]:
        """(token rows, values) where `feature` fired."""
        f = self.check_feature(feature)
        start, end = self.csc.indptr[f], self.csc.indptr[f + 1]
        return self.csc.indices[start:end].astype(np.int64), self.csc.data[start:end]

    def doc_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.doc_offsets, rows, side="right") - 1

    def pooled(self, how: str = "max") -> sp.csr_matrix:
        """[n_docs, d_sae] document activations: max (default), mean over the doc's tokens, or count."""
        ind = sp.csr_matrix(
            (np.ones(self.n_tokens, np.float32), (self.doc_of(np.arange(self.n_tokens)), np.arange(self.n_tokens))),
            shape=(self.n_docs, self.n_tokens),
        )
        if how == "count":
            return (ind @ (self.token_acts > 0).astype(np.float32)).tocsr()
        if how == "mean":
            lengths = np.maximum(np.diff(self.doc_offsets), 1).astype(np.float32)
            return sp.diags(1.0 / lengths) @ (ind @ self.token_acts).tocsr()
        if how != "max":
            raise InputError(f"unknown pooling {how!r} (max, mean, count)")
        coo = self.token_acts.tocoo()
        docs = self.doc_of(coo.row)
        key = docs * self.d_sae + coo.col
        order = np.lexsort((-coo.data, key))  # per (doc, feature): the largest value first
        key, first = key[order], np.ones(len(order), bool)
        first[1:] = key[1:] != key[:-1]
        sel = order[first]
        return sp.csr_matrix((coo.data[sel], (docs[sel], coo.col[sel])), shape=(self.n_docs, self.d_sae))

    def densities(self) -> np.ndarray:
        """Fraction of tokens on which each feature fires, [d_sae]."""
        return np.diff(self.csc.indptr) / max(self.n_tokens, 1)

    def max_values(self) -> np.ndarray:
        return np.asarray(self.token_acts.max(axis=0).todense()).ravel()

    def context(self, row: int, feature: int, before: int = 24, after: int = 8) -> Context:
        """The window of tokens around token row `row`, with `feature`'s value on each."""
        doc = int(self.doc_of(np.asarray([row]))[0])
        start, end = int(self.doc_offsets[doc]), int(self.doc_offsets[doc + 1])
        lo, hi = max(start, row - before), min(end, row + after + 1)
        col = np.asarray(self.token_acts[lo:hi, feature].todense()).ravel()
        toks = self.tokens[doc][lo - start : hi - start]
        return Context(doc, row - lo, float(col[row - lo]), list(toks), [round(float(v), 4) for v in col])

    def top_contexts(self, feature: int, n: int = 10, one_per_doc: bool = True, **window) -> list[Context]:
        """The `n` strongest activations of `feature` (by default at most one per document)."""
        rows, vals = self.feature_tokens(feature)
        order = np.lexsort((rows, -vals))
        out, seen = [], set()
        for i in order:
            doc = int(self.doc_of(rows[i : i + 1])[0])
            if one_per_doc and doc in seen:
                continue
            seen.add(doc)
            out.append(self.context(int(rows[i]), feature, **window))
            if len(out) == n:
                break
        return out

    def quantile_contexts(
        self, feature: int, n_bins: int = 4, per_bin: int = 3, **window
    ) -> list[tuple[float, float, list[Context]]]:
        """Examples from evenly spaced activation intervals (0, max]: what weak vs strong firing looks like."""
        rows, vals = self.feature_tokens(feature)
        if len(vals) == 0:
            return []
        edges = np.linspace(0.0, float(vals.max()), n_bins + 1)
        rng = np.random.default_rng(feature)  # deterministic per feature
        out = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = np.flatnonzero((vals > lo) & (vals <= hi))
            pick = rng.choice(inside, size=min(per_bin, len(inside)), replace=False) if len(inside) else []
            out.append((float(lo), float(hi), [self.context(int(rows[i]), feature, **window) for i in sorted(pick)]))
        return out

    def histogram(self, feature: int, bins: int = 30) -> tuple[list[int], list[float]]:
        """Counts and bin centres of `feature`'s nonzero activations (parallel lists, as Neuronpedia wants)."""
        _, vals = self.feature_tokens(feature)
        if len(vals) == 0:
            return [], []
        counts, edges = np.histogram(vals, bins=bins, range=(0.0, float(vals.max())))
        centres = (edges[:-1] + edges[1:]) / 2
        return [int(c) for c in counts], [round(float(c), 4) for c in centres]

    def doc_token_values(self, doc: int, feature: int) -> np.ndarray:
        start, end = self.doc_offsets[doc], self.doc_offsets[doc + 1]
        return np.asarray(self.token_acts[start:end, feature].todense()).ravel()
