"""Sparse autoencoders: architectures (registry), formats, loading by id or path."""

from qscope.sae import architectures as _architectures  # noqa: F401  (registers topk / jumprelu / relu)
from qscope.sae.base import SAE, SAE_REGISTRY, SAEConfig, SparseCodes, register
from qscope.sae.formats import k_from_repo_name, qwen_scope_repo_name, save_qwen_scope, save_saelens
from qscope.sae.loading import DEFAULT_SAE_ID, default_sae_id, load_sae, shipped_sae_ids

__all__ = [
    "DEFAULT_SAE_ID",
    "SAE",
    "SAEConfig",
    "SAE_REGISTRY",
    "SparseCodes",
    "default_sae_id",
    "k_from_repo_name",
    "load_sae",
    "qwen_scope_repo_name",
    "register",
    "save_qwen_scope",
    "save_saelens",
    "shipped_sae_ids",
]
