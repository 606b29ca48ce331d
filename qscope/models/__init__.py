"""Language models: resolving a spec (short name, directory, GGUF, hub id[@revision]) and reading the residual
stream."""

from qscope.models.language_model import LanguageModel, Residuals
from qscope.models.match import (
    ResolvedSAE,
    check_sae_fits,
    model_aliases,
    model_for_sae,
    resolve_sae_and_model,
    sae_layer,
)
from qscope.models.resolve import DEFAULT_MODEL, EMBEDDED_MODELS, model_name, resolve_model_dir

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "LanguageModel",
    "Residuals",
    "ResolvedSAE",
    "check_sae_fits",
    "model_aliases",
    "model_for_sae",
    "model_name",
    "resolve_model_dir",
    "resolve_sae_and_model",
    "sae_layer",
]
