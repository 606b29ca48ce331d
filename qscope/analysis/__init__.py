"""Analysis: which features encode a concept (discovery), what a feature means (labels), where a concept lives
(localization), and reading features at a glance (HTML dashboards, Neuronpedia JSON, steering sweep view).

Heavy imports stay inside functions; importing this package is cheap.
"""

from qscope.analysis.activations import Context, CorpusActivations
from qscope.analysis.background import background_activations, background_texts, read_texts
from qscope.analysis.discovery import DiscoveryResult, FeatureScore, discover_features, score_features
from qscope.analysis.labels import FeatureLabel, FeatureLabeler, logit_effects, promoted_tokens, score_label
from qscope.analysis.localization import LayerReport, LocalizationResult, localize_concept

__all__ = [
    "Context",
    "CorpusActivations",
    "DiscoveryResult",
    "FeatureLabel",
    "FeatureLabeler",
    "FeatureScore",
    "LayerReport",
    "LocalizationResult",
    "background_activations",
    "background_texts",
    "discover_features",
    "localize_concept",
    "logit_effects",
    "promoted_tokens",
    "read_texts",
    "score_features",
    "score_label",
]
