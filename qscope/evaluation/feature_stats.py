"""Per-feature activation statistics over a reference corpus, saved next to the SAE.

Steering strengths and dashboards need to know what "a lot" means for each feature: activations of different
features differ by orders of magnitude. `FeatureStats.strength_unit` is the documented unit of steering
strength: **1.0 = the 0.99 quantile of the feature's non-zero activations** on the reference corpus (its
typical maximum: unlike the plain max it does not hinge on one outlier token, and for rare features with
fewer than 100 activations it is close to the max). Features that never fired get the median unit of the
features that did, so that a strength still means something (their `density` is 0: callers can warn).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from qscope.errors import InputError, SAELoadError
from qscope.evaluation.texts import EvalTexts, eval_token_mask, plan_eval
from qscope.features import drop_norm_outliers
from qscope.paths import atomic_path

FEATURE_STATS_FILE = "feature_stats.safetensors"
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)
STRENGTH_QUANTILE = 0.99
"""Quantile of a feature's non-zero activations that defines steering strength 1.0."""


@dataclass
class FeatureStats:
    """Activation statistics of every feature of one SAE over `n_tokens` reference tokens (arrays [d_sae])."""

    n_tokens: int
    count: np.ndarray
    """int64: tokens on which the feature was active (> 0)."""
    density: np.ndarray
    """Fraction of tokens on which the feature was active."""
    max_activation: np.ndarray
    """Largest activation seen (0 if never active)."""
    mean_activation: np.ndarray
    """Mean activation over the tokens where it was active (0 if never active)."""
    quantiles: np.ndarray
    """[d_sae, len(quantile_levels)] quantiles of the non-zero activations (linear interpolation, as np.quantile)."""
    quantile_levels: tuple[float, ...] = QUANTILES
    top_token_index: np.ndarray | None = None
    """Optional [d_sae, k] int64: global index of the top-activating tokens (-1 = none), see `metadata`."""
    top_values: np.ndarray | None = None
    """Optional [d_sae, k] float32: their activations (0 where none)."""
    metadata: dict = field(default_factory=dict)
    """sae, layer, model, text_source, definition of the strength unit."""

    @property
    def d_sae(self) -> int:
        return int(self.density.shape[0])

    @property
    def dead(self) -> np.ndarray:
        return self.count == 0

    @property
    def strength_unit(self) -> np.ndarray:
        """[d_sae] float32: activation that steering strength 1.0 stands for (see the module docstring)."""
        level = self.quantile_levels.index(STRENGTH_QUANTILE) if STRENGTH_QUANTILE in self.quantile_levels else -1
        unit = self.quantiles[:, level].astype(np.float32).copy()
        alive = ~self.dead
        fallback = float(np.median(unit[alive])) if alive.any() else 1.0
        unit[~alive] = fallback
        return unit

    def summary(self) -> dict:
        alive = ~self.dead
        dens = self.density[alive]
        return {
            "n_tokens": self.n_tokens,
            "d_sae": self.d_sae,
            "dead_fraction": float(self.dead.mean()),
            "median_density": float(np.median(dens)) if dens.size else 0.0,
            "dense_features_gt_10pct": int((self.density > 0.1).sum()),
            "median_strength_unit": float(np.median(self.strength_unit)),
        }

    # --- files ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write `feature_stats.safetensors` into `directory` (atomically)."""
        tensors = {
            "count": self.count.astype(np.int64),
            "density": self.density.astype(np.float32),
            "max_activation": self.max_activation.astype(np.float32),
            "mean_activation": self.mean_activation.astype(np.float32),
            "quantiles": self.quantiles.astype(np.float32),
            "strength_unit": self.strength_unit,
        }
        if self.top_token_index is not None:
            tensors["top_token_index"] = self.top_token_index.astype(np.int64)
            tensors["top_values"] = self.top_values.astype(np.float32)
        meta = {
            "n_tokens": str(self.n_tokens),
            "quantile_levels": json.dumps(list(self.quantile_levels)),
            "metadata": json.dumps(self.metadata),
        }
        final = Path(directory) / FEATURE_STATS_FILE
        with atomic_path(final) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=meta)
        return final

    @classmethod
    def load(cls, file: str | Path) -> FeatureStats:
        from safetensors import safe_open

        file = Path(file)
        with safe_open(str(file), framework="numpy") as f:
            meta = f.metadata() or {}
        t = load_file(str(file))
        return cls(
            n_tokens=int(meta.get("n_tokens", 0)),
            count=t["count"],
            density=t["density"],
            max_activation=t["max_activation"],
            mean_activation=t["mean_activation"],
            quantiles=t["quantiles"],
            quantile_levels=tuple(json.loads(meta.get("quantile_levels", json.dumps(QUANTILES)))),
            top_token_index=t.get("top_token_index"),
            top_values=t.get("top_values"),
            metadata=json.loads(meta.get("metadata", "{}")),
        )


def write_feature_stats(stats: FeatureStats, directory: str | Path) -> Path:
    return stats.save(directory)


def load_feature_stats(sae_dir_or_id: str | Path) -> FeatureStats:
    """Feature statistics of a shipped SAE id, an SAE directory, or a `feature_stats.safetensors` file."""
    from qscope.evaluation.paths import sae_directory

    path = Path(sae_dir_or_id).expanduser()
    file = path if path.is_file() else sae_directory(sae_dir_or_id) / FEATURE_STATS_FILE
    if not file.exists():
        raise SAELoadError(
            f"no feature statistics for {sae_dir_or_id!r} ({file} missing); compute them with "
            f"`qscope eval-sae {sae_dir_or_id} --write-stats`"
        )
    return FeatureStats.load(file)


# --- computing ------------------------------------------------------------------------------------
def stats_from_codes(
    indices: np.ndarray | torch.Tensor,
    values: np.ndarray | torch.Tensor,
    d_sae: int,
    n_tokens: int,
    quantile_levels: Sequence[float] = QUANTILES,
    top_k: int = 0,
    token_index: np.ndarray | torch.Tensor | None = None,
) -> FeatureStats:
    """Exact statistics from flat (feature index, value) pairs of `n_tokens` tokens.

    `indices`/`values` may be flat [n] or padded [n_tokens, m] (zero values are padding and ignored).
    `token_index` gives each pair's global token number (needed for `top_k` > 0; default: row number).
    """
    idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    val = np.asarray(values.float().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float32)
    if token_index is None and idx.ndim == 2:
        token_index = np.repeat(np.arange(idx.shape[0]), idx.shape[1]).reshape(idx.shape)
    tok = (
        None
        if token_index is None
        else np.asarray(token_index.cpu() if isinstance(token_index, torch.Tensor) else token_index).reshape(-1)
    )
    idx, val = idx.reshape(-1).astype(np.int64), val.reshape(-1)
    keep = val > 0
    idx, val = idx[keep], val[keep]
    tok = tok[keep] if tok is not None else None
    if idx.size and (idx.min() < 0 or idx.max() >= d_sae):
        raise InputError(f"feature indices out of range for d_sae={d_sae}")
    if n_tokens <= 0:
        raise InputError("feature statistics need at least one token")

    # Sort by feature, then by value descending: each feature's activations form one contiguous run.
    order = np.lexsort((-val, idx))
    idx, val = idx[order], val[order]
    tok = tok[order] if tok is not None else None
    count = np.bincount(idx, minlength=d_sae).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    sums = np.bincount(idx, weights=val.astype(np.float64), minlength=d_sae)
    alive = count > 0
    max_act = np.zeros(d_sae, np.float32)
    max_act[alive] = val[start[alive]]
    mean_act = np.zeros(d_sae, np.float32)
    mean_act[alive] = (sums[alive] / count[alive]).astype(np.float32)

    levels = tuple(float(q) for q in quantile_levels)
    quant = np.zeros((d_sae, len(levels)), np.float32)
    s, c = start[alive], count[alive]
    for j, q in enumerate(levels):
        # Ascending rank r = q (c - 1) lives at descending position c - 1 - r.
        r = q * (c - 1)
        lo, hi = np.floor(r).astype(np.int64), np.ceil(r).astype(np.int64)
        v_lo, v_hi = val[s + c - 1 - lo], val[s + c - 1 - hi]
        quant[alive, j] = (v_lo.astype(np.float64) + (v_hi - v_lo) * (r - lo)).astype(np.float32)

    top_index = top_values = None
    if top_k > 0:
        if tok is None:
            raise InputError("top_k examples need token_index (or padded [n_tokens, m] codes)")
        top_index = np.full((d_sae, top_k), -1, np.int64)
        top_values = np.zeros((d_sae, top_k), np.float32)
        rank = np.arange(idx.size) - start[idx]  # position within the feature's run (0 = strongest)
        sel = rank < top_k
        top_index[idx[sel], rank[sel]] = tok[sel]
        top_values[idx[sel], rank[sel]] = val[sel]
    return FeatureStats(
        n_tokens=int(n_tokens),
        count=count,
        density=(count / n_tokens).astype(np.float32),
        max_activation=max_act,
        mean_activation=mean_act,
        quantiles=quant,
        quantile_levels=levels,
        top_token_index=top_index,
        top_values=top_values,
    )


@torch.no_grad()
def compute_feature_stats(
    lm,
    sae,
    texts: Sequence[str] | EvalTexts,
    layer: int | None = None,
    n_tokens: int = 100_000,
    batch_tokens: int = 4096,
    max_length: int | None = None,
    quantile_levels: Sequence[float] = QUANTILES,
    top_k: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> FeatureStats:
    """Feature statistics of `sae` over about `n_tokens` tokens of `texts` (truncated forward to `layer`).

    Tokens are the evaluation tokens of `qscope.evaluation` (no sink, padding or special tokens); with
    `top_k`, `top_token_index` numbers them in order over the texts as chosen by `select_texts(..., seed)`.
    """
    run = plan_eval(lm, sae, texts, layer, n_tokens, max_length, batch_tokens, seed, progress, desc="feature stats")
    layer, max_length, source = run.layer, run.max_length, run.source
    all_idx, all_val, all_tok = [], [], []
    seen = 0
    for batch in run.batches:
        res = lm.residuals(batch, [layer], max_length)
        mask = drop_norm_outliers(
            eval_token_mask(res.input_ids, res.attention_mask, run.special_ids), res.hidden[layer]
        )
        codes = sae.encode(res.hidden[layer][mask])
        n = codes.values.shape[0]
        keep = codes.values > 0
        rows = torch.arange(seen, seen + n)[:, None].expand_as(codes.indices)
        all_idx.append(codes.indices[keep].to(torch.int32).numpy())
        all_val.append(codes.values[keep].float().numpy())
        all_tok.append(rows[keep].numpy())
        seen += n
    if seen == 0:
        raise InputError("no tokens to compute feature statistics on")
    stats = stats_from_codes(
        np.concatenate(all_idx),
        np.concatenate(all_val),
        sae.d_sae,
        seen,
        quantile_levels,
        top_k,
        np.concatenate(all_tok),
    )
    stats.metadata = {
        "sae": sae.sae_id,
        "layer": layer,
        "model": getattr(lm, "name", ""),
        "text_source": source,
        "seed": seed,
        "max_length": max_length,
        "strength_unit": f"quantile {STRENGTH_QUANTILE} of non-zero activations (dead features: median of live)",
        "tokens": "real tokens after position 0 (attention sink), special tokens excluded",
    }
    return stats


@torch.no_grad()
def feature_stats_from_cache(
    sae,
    cache: str | Path,
    layer: int | None = None,
    n_tokens: int = 100_000,
    batch_tokens: int = 8192,
    quantile_levels: Sequence[float] = QUANTILES,
) -> FeatureStats:
    """Feature statistics of `sae` over the first `n_tokens` rows of an activation cache (`cache_activations`).

    No LM forward: on a CPU the LM costs far more per token than the SAE, and the held-out cache that training
    measured on already holds these residuals. Its rows exclude what the text path excludes (position 0,
    padding, massive-activation outliers); the LM's special tokens inside a text are not dropped, which only
    matters for corpora that contain them as text. Top examples need token ids, which a cache does not keep.
    """
    from qscope.training.cache import ActivationCache

    acts = ActivationCache(cache)
    layer = sae.cfg.hook_layer if layer is None else int(layer)
    model = acts.manifest.get("model")
    if acts.d_in != sae.d_in or (model and sae.cfg.model_name and model != sae.cfg.model_name):
        raise InputError(
            f"activation cache {acts.path} holds {model} (d_in {acts.d_in}); the SAE reads "
            f"{sae.cfg.model_name} (d_in {sae.d_in})"
        )
    all_idx, all_val, seen = [], [], 0
    for array in acts.layer_arrays(layer):
        for start in range(0, len(array), batch_tokens):
            take = min(batch_tokens, n_tokens - seen)
            if take <= 0:
                break
            x = torch.from_numpy(np.asarray(array[start : start + take], np.float32))
            codes = sae.encode(x)
            keep = codes.values > 0
            all_idx.append(codes.indices[keep].to(torch.int32).numpy())
            all_val.append(codes.values[keep].float().numpy())
            seen += len(x)
    if seen == 0:
        raise InputError(f"activation cache {acts.path} is empty")
    stats = stats_from_codes(np.concatenate(all_idx), np.concatenate(all_val), sae.d_sae, seen, quantile_levels)
    manifest = acts.manifest
    source = f"{Path(manifest.get('corpus') or acts.path).name} (split={manifest.get('split')}, activation cache)"
    stats.metadata = {
        "sae": sae.sae_id,
        "layer": layer,
        "model": model or "",
        "text_source": source,
        "max_length": manifest.get("max_length"),
        "strength_unit": f"quantile {STRENGTH_QUANTILE} of non-zero activations (dead features: median of live)",
        "tokens": "real tokens after position 0 (attention sink) and massive-activation outliers, from an activation "
        "cache",
    }
    return stats
