"""Pure helpers shared by the mining / scoring operators: target-feature scores of signatures."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa


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

    target_score: mean over target features of min(1, activation / reference), reference = the feature's median
    pooled activation on the seeds; 1.0 = every target fires at least as strongly as on a typical seed.
    target_coverage: fraction of target features that fire at all.
    """
    if acts.shape[1] == 0:
        z = np.zeros(acts.shape[0], np.float32)
        return z, z
    ref = np.maximum(np.asarray(reference, np.float32), 1e-6)
    score = np.minimum(acts / ref, 1.0).mean(1).astype(np.float32)
    coverage = (acts > 0).mean(1).astype(np.float32)
    return score, coverage
