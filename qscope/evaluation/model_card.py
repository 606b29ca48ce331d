"""The model card: a markdown file next to an SAE's weights with its evaluation numbers and config."""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

from qscope.evaluation.metrics import SAEEvalResult
from qscope.paths import atomic_path

MODEL_CARD_FILE = "MODEL_CARD.md"


def _fmt(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_model_card(result: SAEEvalResult, sae, feature_stats=None, notes: str | None = None) -> str:
    """Markdown for `result`; `feature_stats` (a FeatureStats) adds a statistics section."""
    cfg = sae.cfg
    rows = [
        ("explained variance", result.explained_variance, "1 − SSE/SST, SST around the per-dimension mean"),
        ("MSE", result.mse, "mean squared error per element"),
        ("L0", result.l0, "mean active latents per token"),
        ("dead fraction", result.dead_fraction, "latents that never fired on the evaluation tokens"),
        ("CE-loss recovered", result.ce_loss_recovered, "(CE_zero − CE_spliced) / (CE_zero − CE_clean)"),
        ("KL(clean ‖ spliced)", result.kl_div, "nats per token"),
        ("delta LM loss", result.delta_lm_loss, "CE_spliced − CE_clean, nats per token"),
        ("CE clean", result.ce_clean, "next-token cross-entropy of the unmodified model"),
        ("CE spliced", result.ce_spliced, f"residual after block {result.layer} replaced by the reconstruction"),
        ("CE zero-ablation", result.ce_zero_ablation, f"residual after block {result.layer} set to zero"),
    ]
    lines = [
        f"# SAE `{result.sae}`",
        "",
        f"{cfg.architecture} SAE, d_in {cfg.d_in} → d_sae {cfg.d_sae}"
        + (f", k {cfg.k}" if cfg.k else "")
        + f", reading the residual stream after block {result.layer} of `{cfg.model_name or result.model}`.",
        "",
        "## Evaluation",
        "",
        f"Evaluated on {result.n_tokens:,} tokens ({result.n_loss_tokens:,} next-token predictions) from "
        f"{result.n_texts:,} texts of {result.text_source}, model `{result.model}`, "
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d')} (`qscope eval-sae`).",
        "",
        "| metric | value | definition |",
        "|---|---:|---|",
        *[f"| {name} | {_fmt(value)} | {definition} |" for name, value, definition in rows],
        "",
        "Position 0 (the attention sink, residual norm ~100x the rest), padding and special tokens are excluded from",
        "every number, and keep their original residual in the spliced and zero-ablated runs: the SAE is not",
        "trained there, and replacing the sink would measure a broken attention sink rather than the SAE.",
        "",
    ]
    if feature_stats is not None:
        s = feature_stats.summary()
        lines += [
            "## Feature statistics",
            "",
            f"`feature_stats.safetensors`: per-feature density, max, mean-when-active and quantiles "
            f"{list(feature_stats.quantile_levels)} of the non-zero activations over {s['n_tokens']:,} tokens of "
            f"{feature_stats.metadata.get('text_source', 'the reference corpus')}. Steering strength 1.0 = a "
            "feature's 0.99 quantile of non-zero activations "
            "(`qscope.evaluation.load_feature_stats(...).strength_unit`).",
            "",
            f"- never active: {s['dead_fraction']:.2%} of {s['d_sae']:,} features",
            f"- median density of live features: {s['median_density']:.3g}",
            f"- features active on > 10% of tokens: {s['dense_features_gt_10pct']:,}",
            f"- median strength unit: {s['median_strength_unit']:.4g}",
            "",
        ]
    config = {k: v for k, v in cfg.to_dict().items() if k != "metadata"}
    lines += ["## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    if cfg.metadata:
        lines += ["Training metadata:", "", "```json", json.dumps(cfg.metadata, indent=2, default=str), "```", ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    lines += ["## Raw numbers", "", "```json", json.dumps(result.to_json(), indent=2), "```", ""]
    return "\n".join(lines)


def write_model_card(
    result: SAEEvalResult, sae, directory: str | Path, feature_stats=None, notes: str | None = None
) -> Path:
    """Write `MODEL_CARD.md` into `directory` (atomically) and return its path."""
    final = Path(directory) / MODEL_CARD_FILE
    with atomic_path(final) as tmp:
        tmp.write_text(render_model_card(result, sae, feature_stats, notes), encoding="utf-8")
    return final
