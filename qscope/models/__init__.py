"""Language models: resolving a spec (short name, directory, GGUF, hub id) and reading the residual stream."""

from qscope.models.language_model import LanguageModel, Residuals
from qscope.models.resolve import DEFAULT_MODEL, EMBEDDED_MODELS, resolve_model_dir

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "LanguageModel", "Residuals", "resolve_model_dir"]
