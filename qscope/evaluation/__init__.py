"""SAE evaluation (reconstruction, sparsity, spliced-in LM loss), model cards and per-feature statistics."""

from qscope.evaluation.feature_stats import (
    FEATURE_STATS_FILE,
    STRENGTH_QUANTILE,
    FeatureStats,
    compute_feature_stats,
    feature_stats_from_cache,
    load_feature_stats,
    stats_from_codes,
    write_feature_stats,
)
from qscope.evaluation.metrics import JSON_KEYS, SAEEvalResult, evaluate_sae
from qscope.evaluation.model_card import MODEL_CARD_FILE, render_model_card, write_model_card
from qscope.evaluation.paths import sae_directory
from qscope.evaluation.texts import SHIPPED_EVAL_NAME, EvalTexts, default_corpus_path, load_texts, shipped_eval_path

__all__ = [
    "FEATURE_STATS_FILE",
    "JSON_KEYS",
    "MODEL_CARD_FILE",
    "SHIPPED_EVAL_NAME",
    "STRENGTH_QUANTILE",
    "EvalTexts",
    "FeatureStats",
    "SAEEvalResult",
    "compute_feature_stats",
    "default_corpus_path",
    "evaluate_sae",
    "feature_stats_from_cache",
    "load_feature_stats",
    "load_texts",
    "render_model_card",
    "sae_directory",
    "shipped_eval_path",
    "stats_from_codes",
    "write_feature_stats",
    "write_model_card",
]
