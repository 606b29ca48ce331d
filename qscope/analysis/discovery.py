"""Which SAE features separate a concept's texts from the rest? Rank latents by AUROC of pooled activations.

Each text is pooled to one number per feature (max over its tokens, the signature default). For every feature
active in at least one positive text we compute
  - AUROC: the probability that a random positive text activates the feature more than a random negative
    (ties count half) — scale-free, robust to a few huge activations, 0.5 = no signal;
  - effect size: the normalized mean difference (mean_pos - mean_neg) / pooled std (Cohen's d);
  - firing rates: the fraction of positive / negative texts where the feature fires at all.
Ranking is by AUROC, then by how rarely the feature fires on negatives, then effect size (AUROC saturates at 1.0
for several features on small sets; a feature silent on every negative is the more specific one, and the effect
size orders the rest by margin). `method="mean_diff"` ranks by effect size, then AUROC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from qscope.errors import InputError

METHODS = ("auroc", "mean_diff")


@dataclass
class FeatureScore:
    """How well one feature separates positives from negatives."""

    feature: int
    auroc: float
    effect_size: float
    mean_pos: float
    mean_neg: float
    frac_pos: float
    """Fraction of positive texts on which the feature fires."""
    frac_neg: float
    label: str | None = None

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class DiscoveryResult:
    features: list[FeatureScore]
    n_pos: int
    n_neg: int
    layer: int | None = None
    sae_id: str | None = None
    method: str = "auroc"
    pooling: str = "max"
    extra: dict = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return [f.feature for f in self.features]

    def to_dict(self) -> dict:
        return {
            "sae": self.sae_id,
            "layer": self.layer,
            "method": self.method,
            "pooling": self.pooling,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            **self.extra,
            "features": [f.to_dict() for f in self.features],
        }


def _dense_columns(m: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
    return np.asarray(m[:, cols].todense(), dtype=np.float64)


def score_features(
    pos: sp.csr_matrix | np.ndarray,
    neg: sp.csr_matrix | np.ndarray,
    top: int = 20,
    method: str = "auroc",
    min_frac_pos: float = 0.0,
    direction: str = "positive",
) -> list[FeatureScore]:
    """Rank features (columns) of pooled activations `pos` [n_pos, d_sae] vs `neg` [n_neg, d_sae].

    direction="positive" keeps features more active on positives (what a concept *has*); "negative" the
    reverse (what it lacks); "both" ranks by |AUROC - 0.5|.
    """
    if method not in METHODS:
        raise InputError(f"unknown discovery method {method!r}; choose one of {METHODS}")
    pos, neg = sp.csr_matrix(pos), sp.csr_matrix(neg)
    if pos.shape[0] == 0 or neg.shape[0] == 0:
        raise InputError(f"discovery needs positive and negative texts (got {pos.shape[0]} and {neg.shape[0]})")
    if pos.shape[1] != neg.shape[1]:
        raise InputError(f"positives have {pos.shape[1]} features but negatives {neg.shape[1]}")
    active = (pos.getnnz(axis=0) > 0) if direction == "positive" else (pos.getnnz(axis=0) + neg.getnnz(axis=0) > 0)
    cand = np.flatnonzero(active)
    if cand.size == 0:
        return []
    p, n = _dense_columns(pos, cand), _dense_columns(neg, cand)
    n_pos, n_neg = p.shape[0], n.shape[0]
    ranks = rankdata(np.vstack([p, n]), axis=0)  # average ranks: ties count half
    auroc = (ranks[:n_pos].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    mp, mn = p.mean(0), n.mean(0)
    sd = np.sqrt((p.var(0) + n.var(0)) / 2)
    effect = (mp - mn) / np.maximum(sd, 1e-6 * np.maximum(np.abs(mp), 1.0))
    frac_p, frac_n = (p > 0).mean(0), (n > 0).mean(0)
    keep = frac_p >= min_frac_pos
    if direction == "positive":
        keep &= mp > mn
        key = (-auroc, frac_n, -effect) if method == "auroc" else (-effect, -auroc)
    elif direction == "negative":
        keep &= mp < mn
        key = (auroc, effect) if method == "auroc" else (effect, auroc)
    else:
        key = (-np.abs(auroc - 0.5), -np.abs(effect)) if method == "auroc" else (-np.abs(effect), -np.abs(auroc - 0.5))
    order = [i for i in np.lexsort((cand,) + tuple(reversed(key))) if keep[i]][:top]
    return [
        FeatureScore(
            int(cand[i]),
            float(auroc[i]),
            float(effect[i]),
            float(mp[i]),
            float(mn[i]),
            float(frac_p[i]),
            float(frac_n[i]),
        )
        for i in order
    ]


def discover_features(
    lm,
    sae,
    positives: Sequence[str],
    negatives: Sequence[str] | None = None,
    *,
    background: Sequence[str] | None = None,
    layer: int | None = None,
    top: int = 20,
    method: str = "auroc",
    max_length: int = 256,
    labeler=None,
    negatives_acts=None,
    positives_acts=None,
) -> DiscoveryResult:
    """Features that separate `positives` from `negatives` (or, if none given, from a `background` sample).

    `labeler` (a `FeatureLabeler`) attaches a short label to every returned feature.
    `negatives_acts` / `positives_acts` (`CorpusActivations` of those texts) skip re-reading them, e.g. a cached
    background.
    """
    from qscope.analysis.activations import CorpusActivations

    if positives_acts is None:
        positives = lm.validate_texts(positives)
    if negatives_acts is None:
        negatives = negatives if negatives is not None else background
        if negatives is None:
            from qscope.analysis.background import background_texts

            negatives = background_texts()
        negatives_acts = CorpusActivations.collect(lm, sae, negatives, layer, max_length)
    pos_acts = positives_acts or CorpusActivations.collect(
        lm, sae, positives, layer if layer is not None else negatives_acts.layer, max_length
    )
    scores = score_features(pos_acts.pooled("max"), negatives_acts.pooled("max"), top=top, method=method)
    if labeler is not None:
        for s in scores:
            s.label = labeler.label(s.feature).text
    return DiscoveryResult(scores, pos_acts.n_docs, negatives_acts.n_docs, pos_acts.layer, sae.sae_id, method)
