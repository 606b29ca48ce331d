"""qscope: long-tail dataset expansion in the sparse-autoencoder feature space of an LLM.

The core library imports neither ray nor vllm at import time; those live behind qscope.operators,
qscope.pipelines and the vllm engine.
"""

import os as _os

from qscope.errors import QscopeError

__version__ = "0.1.0"

# A source checkout keeps operators/ and pipelines/ at the repository root; an install maps them to
# qscope.operators / qscope.pipelines (pyproject `package-dir`). When this package is imported straight from a
# checkout without that mapping — the folder `ray job submit --working-dir .` uploads (which comes first on the
# job's sys.path, ahead of any installed qscope), or PYTHONPATH=. — the root joins the package path, so both still
# import, from the same checkout as the rest of qscope.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pipelines", "__init__.py")) and _os.path.isfile(
    _os.path.join(_root, "operators", "__init__.py")
):
    __path__.append(_root)  # noqa: F821 - the package's own path list

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
