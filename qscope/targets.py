"""Pick the SAE features that characterise a set of seed texts against a corpus background (contrastive).

The pipeline steers and scores with these features, so a good target is (a) present in many seeds (a feature
seen in one seed is an accident of that text) and (b) rarer in the background (a feature present everywhere —
formatting, "English prose" — says nothing about the seeds). Scores:

- "logodds" (default): smoothed log-odds ratio of presence, seeds vs background,
  log((s + α) / (n_s − s + α)) − log((b + α) / (n_b − b + α)); ties broken by mean difference.
- "meandiff": normalised difference of mean pooled activation (absent = 0): (μ_s − μ_b) / sqrt((σ²_s + σ²_b)/2 + ε).

Then texts are scored against the chosen targets (`target_activations`, `target_scores`): how strongly each
signature expresses them relative to the seeds — what mining and the expand filter keep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from qscope.errors import InputError
from qscope.index.ragged import as_ragged, to_csr

METHODS = ("logodds", "meandiff")


class TargetFeature(NamedTuple):
    feature_id: int
    score: float
    seed_coverage: float
    """Fraction of seeds whose signature contains the feature."""
    background_coverage: float
    seed_mean: float
    """Mean pooled activation over the seeds that contain it (a natural unit for steering strength)."""
    background_mean: float
    """Mean pooled activation over the background documents that contain it (0 if none)."""


def _stats(fids: Any, vals: Any, d_sae: int, what: str):
    r = as_ragged(fids, vals, d_sae)
    if r.n_rows == 0:
        raise InputError(f"no {what} signatures given")
    x = to_csr(r, d_sae)
    n = x.shape[0]
    present = np.bincount(x.indices, minlength=d_sae).astype(np.float64)
    total = np.bincount(x.indices, weights=x.data, minlength=d_sae)
    sq = np.bincount(x.indices, weights=x.data.astype(np.float64) ** 2, minlength=d_sae)
    mean_all = total / n
    var_all = np.maximum(sq / n - mean_all**2, 0.0)
    mean_active = np.divide(total, present, out=np.zeros(d_sae), where=present > 0)
    return n, present, mean_all, var_all, mean_active


def select_target_features(
    seed_feature_ids: Any,
    seed_feature_values: Any,
    background_feature_ids: Any,
    background_feature_values: Any,
    d_sae: int,
    top_k: int = 16,
    min_seed_coverage: float = 0.25,
    method: str = "logodds",
    alpha: float = 0.5,
) -> list[TargetFeature]:
    """Ranked target features (best first), at most `top_k`, each present in >= min_seed_coverage of the seeds.

    Signatures are given as for `SignatureIndex.add` (lists of arrays, or the Parquet list columns).
    Raises InputError if no feature reaches the coverage (lower `min_seed_coverage` or add seeds).
    """
    if method not in METHODS:
        raise InputError(f"unknown target method {method!r}; choose one of {METHODS}")
    if not 0.0 <= min_seed_coverage <= 1.0:
        raise InputError(f"min_seed_coverage must be in [0, 1], got {min_seed_coverage}")
    n_s, pres_s, mu_s, var_s, act_s = _stats(seed_feature_ids, seed_feature_values, d_sae, "seed")
    n_b, pres_b, mu_b, var_b, act_b = _stats(background_feature_ids, background_feature_values, d_sae, "background")
    logodds = np.log((pres_s + alpha) / (n_s - pres_s + alpha)) - np.log((pres_b + alpha) / (n_b - pres_b + alpha))
    meandiff = (mu_s - mu_b) / np.sqrt((var_s + var_b) / 2 + 1e-6)
    primary, secondary = (logodds, meandiff) if method == "logodds" else (meandiff, logodds)
    cov_s, cov_b = pres_s / n_s, pres_b / n_b
    eligible = np.flatnonzero((cov_s >= min_seed_coverage) & (pres_s > 0))
    if eligible.size == 0:
        raise InputError(
            f"no feature is active in >= {min_seed_coverage:.0%} of the {n_s} seeds; lower min_seed_coverage"
        )
    order = eligible[np.lexsort((eligible, -secondary[eligible], -primary[eligible]))][:top_k]
    return [
        TargetFeature(int(f), float(primary[f]), float(cov_s[f]), float(cov_b[f]), float(act_s[f]), float(act_b[f]))
        for f in order
    ]


def signature_rows(table: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
    """(feature_ids int64, feature_values float32) per row of a table with the signature columns."""
    ids = table.column("feature_ids").to_pylist()
    vals = table.column("feature_values").to_pylist()
    return [(np.asarray(i or [], np.int64), np.asarray(v or [], np.float32)) for i, v in zip(ids, vals)]


def target_activations(rows: Sequence[tuple[np.ndarray, np.ndarray]], targets: Sequence[int]) -> np.ndarray:
    """[n_rows, n_targets] pooled activation of each target feature (0 where it is not in the signature)."""
    targets = np.asarray(list(targets), np.int64)
    out = np.zeros((len(rows), len(targets)), np.float32)
    if not len(targets):
        return out
    pos = {int(f): j for j, f in enumerate(targets)}
    for r, (ids, vals) in enumerate(rows):
        for f, v in zip(ids.tolist(), vals.tolist()):
            j = pos.get(f)
            if j is not None:
                out[r, j] = max(out[r, j], v)
    return out


def target_scores(acts: np.ndarray, reference: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(target_score, target_coverage) per row.

    target_score: mean over target features of min(1, activation / reference), reference = the feature's typical
    pooled activation on the seeds (`SeedModel`: its mean over the seeds that contain it); 1.0 = every target fires
    at least as strongly as on a typical seed.
    target_coverage: fraction of target features that fire at all.
    """
    if acts.shape[1] == 0:
        z = np.zeros(acts.shape[0], np.float32)
        return z, z
    ref = np.maximum(np.asarray(reference, np.float32), 1e-6)
    score = np.minimum(acts / ref, 1.0).mean(1).astype(np.float32)
    coverage = (acts > 0).mean(1).astype(np.float32)
    return score, coverage
