"""Where does a concept live? Scan layers and report where positives and negatives separate best.

At every requested layer one forward pass (truncated at the deepest layer) gives the residual stream.
  - Probe (every layer): logistic regression on the mean-pooled, standardized residual, scored by
    cross-validated AUROC on held-out folds. Also the held-out d' of the class-mean-difference direction, which
    keeps ordering layers after the probe AUROC saturates at 1.0 (common with a few dozen clean examples).
  - SAE (layers that have one): the best single feature, chosen on the training folds and scored on the
    held-out fold, averaged over folds (so picking 1 of 16k features does not inflate the number), plus the top
    features on all data.
Position 0 (attention sink) and special tokens are excluded from pooling, as in feature reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from qscope.errors import InputError


@dataclass
class LayerReport:
    layer: int
    probe_auroc: float
    probe_accuracy: float
    dprime: float
    sae: str | None = None
    sae_heldout_auroc: float | None = None
    top_features: list[dict] = field(default_factory=list)


@dataclass
class LocalizationResult:
    layers: list[LayerReport]
    n_pos: int
    n_neg: int

    @property
    def best(self) -> LayerReport:
        return max(self.layers, key=lambda r: (round(r.probe_auroc, 3), r.dprime, -r.layer))

    def to_dict(self) -> dict:
        return {
            "best_layer": self.best.layer,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "layers": [asdict(r) for r in self.layers],
        }


@torch.no_grad()
def _pool_layers(lm, texts, layers, saes, max_length, batch_size):
    """Mean-pooled residuals per layer [n, d_model], and max-pooled SAE codes per SAE layer [n, d_sae]."""
    special = torch.tensor(sorted(lm.tokenizer.all_special_ids))
    means = {layer: [] for layer in layers}
    codes = {layer: [] for layer in saes}
    for start in range(0, len(texts), batch_size):
        res = lm.residuals(texts[start : start + batch_size], layers, max_length)
        mask = res.attention_mask.bool().clone()
        mask[:, 0] = False
        mask &= ~torch.isin(res.input_ids, special)
        m = mask.unsqueeze(-1).float()
        for layer in layers:
            h = res.hidden[layer].float()
            means[layer].append(((h * m).sum(1) / m.sum(1).clamp_min(1)).cpu().numpy())
        for layer, sae in saes.items():
            h = res.hidden[layer]
            dense = sae.encode_dense(h).float() * m  # [b, s, d_sae]; short batches keep this small
            codes[layer].append(dense.amax(1).cpu().numpy())
    return ({k: np.concatenate(v) for k, v in means.items()}, {k: np.concatenate(v) for k, v in codes.items()})


def _auroc(y, s) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def _probe(x: np.ndarray, y: np.ndarray, folds) -> tuple[float, float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scores, proj = np.zeros(len(y)), np.zeros(len(y))
    for train, test in folds:
        scaler = StandardScaler().fit(x[train])
        xt, xs = scaler.transform(x[train]), scaler.transform(x[test])
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(xt, y[train])
        scores[test] = clf.decision_function(xs)
        direction = xt[y[train] == 1].mean(0) - xt[y[train] == 0].mean(0)
        proj[test] = xs @ (direction / (np.linalg.norm(direction) + 1e-9))
    p1, p0 = proj[y == 1], proj[y == 0]
    dprime = float((p1.mean() - p0.mean()) / np.sqrt((p1.var() + p0.var()) / 2 + 1e-9))
    return _auroc(y, scores), float(((scores > 0) == (y == 1)).mean()), dprime


def _sae_heldout(codes: np.ndarray, y: np.ndarray, folds) -> float:
    """Mean over folds of the held-out AUROC of the feature ranked first on the training folds.

    Averaged per fold, not pooled: different folds may pick different features, whose scales do not compare.
    """
    from qscope.analysis.discovery import score_features

    aurocs = []
    for train, test in folds:
        best = score_features(codes[train][y[train] == 1], codes[train][y[train] == 0], top=1)
        aurocs.append(_auroc(y[test], codes[test][:, best[0].feature]) if best else 0.5)
    return float(np.mean(aurocs))


def localize_concept(
    lm,
    positives: Sequence[str],
    negatives: Sequence[str],
    layers: Sequence[int] | None = None,
    saes: dict | None = None,
    max_length: int = 128,
    n_folds: int = 5,
    batch_size: int = 8,
    top_features: int = 5,
    seed: int = 0,
) -> LocalizationResult:
    """Scan `layers` (default: all) for where `positives` separate from `negatives`."""
    from sklearn.model_selection import StratifiedKFold

    from qscope.analysis.discovery import score_features

    positives, negatives = lm.validate_texts(positives), lm.validate_texts(negatives)
    saes = dict(saes or {})
    layers = sorted(set(range(lm.n_layers) if layers is None else [lm.check_layer(int(x)) for x in layers]) | set(saes))
    k = min(n_folds, len(positives), len(negatives))
    if k < 2:
        raise InputError("localization needs at least 2 positive and 2 negative texts (for held-out scoring)")
    texts = positives + negatives
    y = np.array([1] * len(positives) + [0] * len(negatives))
    folds = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    means, codes = _pool_layers(lm, texts, layers, saes, max_length, batch_size)
    reports = []
    for layer in layers:
        auroc, acc, dprime = _probe(means[layer], y, folds)
        report = LayerReport(layer, round(auroc, 4), round(acc, 4), round(dprime, 4))
        if layer in saes:
            c = codes[layer]
            report.sae = saes[layer].sae_id
            report.sae_heldout_auroc = round(_sae_heldout(c, y, folds), 4)
            report.top_features = [s.to_dict() for s in score_features(c[y == 1], c[y == 0], top=top_features)]
        reports.append(report)
    return LocalizationResult(reports, len(positives), len(negatives))
