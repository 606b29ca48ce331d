"""The SAE architectures: how pre-activations become sparse codes."""

from __future__ import annotations

import torch
from torch import nn

from qscope.errors import QscopeError
from qscope.sae.base import SAE, SAEConfig, SparseCodes, register


@register("topk")
class TopKSAE(SAE):
    """Keeps the k largest (ReLU'd) pre-activations per token (Gao et al. 2024; Qwen-Scope, sparsify)."""

    def __init__(self, cfg: SAEConfig):
        if not cfg.k or cfg.k <= 0:
            raise QscopeError("topk SAE needs k > 0 in its config")
        if cfg.k > cfg.d_sae:
            raise QscopeError(f"topk SAE: k={cfg.k} exceeds d_sae={cfg.d_sae}")
        super().__init__(cfg)

    def activation(self, pre: torch.Tensor) -> SparseCodes:
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return SparseCodes(indices, values.relu())


@register("jumprelu")
class JumpReLUSAE(SAE):
    """A latent fires when its pre-activation exceeds a learned per-latent `threshold` (Rajamanoharan et al.)."""

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.threshold = nn.Parameter(torch.zeros(cfg.d_sae))

    def activation(self, pre: torch.Tensor) -> SparseCodes:
        return self._sparse_from_mask(pre * (pre > self.threshold))


@register("relu")
class ReLUSAE(SAE):
    """The classic L1-trained SAE: ReLU of the pre-activations (SAELens "standard")."""

    def activation(self, pre: torch.Tensor) -> SparseCodes:
        return self._sparse_from_mask(pre.relu())
