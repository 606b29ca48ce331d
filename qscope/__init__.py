"""qscope: long-tail dataset expansion in the sparse-autoencoder feature space of an LLM.

The core library imports neither ray nor vllm at import time; those live behind qscope.operators,
qscope.pipelines and the vllm engine.
"""

from qscope.errors import QscopeError

__version__ = "0.1.0"

__all__ = ["QscopeError", "__version__"]


def __getattr__(name):  # lazy re-exports keep `import qscope` cheap (no torch/transformers until needed)
    lazy = {
        "LanguageModel": "qscope.models",
        "SAE": "qscope.sae",
        "load_sae": "qscope.sae",
        "FeatureExtractor": "qscope.features",
        "DEFAULT_MODEL": "qscope.models",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'qscope' has no attribute {name!r}")
