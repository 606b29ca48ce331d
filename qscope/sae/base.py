"""Sparse autoencoder: one class per architecture behind a registry, math names as in SAELens.

Weights use the SAELens orientation: `W_enc` [d_in, d_sae], `W_dec` [d_sae, d_in]. Encoding returns
sparse codes (indices, values) per token; a dense d_sae tensor is built only when asked for.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from qscope.errors import QscopeError, ShapeMismatchError


class SparseCodes(NamedTuple):
    """Active latents per row. `indices`/`values` are [n, m]; slots with value 0 are padding (inactive)."""

    indices: torch.Tensor  # int64 [n, m]
    values: torch.Tensor  # float [n, m]

    def to_dense(self, d_sae: int) -> torch.Tensor:
        dense = self.values.new_zeros(self.values.shape[0], d_sae)
        return dense.scatter_(1, self.indices, self.values)

    def l0(self) -> torch.Tensor:
        return (self.values > 0).sum(-1)


@dataclasses.dataclass
class SAEConfig:
    """Everything needed to rebuild an SAE besides its weights (stored as cfg.json)."""

    architecture: str
    """Registry name: "topk", "jumprelu" or "relu"."""
    d_in: int
    """Width of the residual stream the SAE reads."""
    d_sae: int
    """Number of latents (features)."""
    k: int | None = None
    """Active latents per token (topk only)."""
    apply_b_dec_to_input: bool = False
    """Subtract `b_dec` from the input before encoding (SAELens/sparsify convention; Qwen-Scope does not)."""
    model_name: str | None = None
    """Model the SAE was trained on (hub id or qscope short name)."""
    hook_layer: int | None = None
    """Residual stream after block `hook_layer` (= hidden_states[hook_layer + 1])."""
    sae_id: str | None = None
    """Stable id used in signature metadata and provenance (e.g. "qscope/smollm2-135m-l15-topk")."""
    dtype: str = "float32"
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Free-form facts (training tokens, input scaling folded at export, ...)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SAEConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in d.items() if k not in names}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.metadata = {**extra, **cfg.metadata}
        return cfg


SAE_REGISTRY: dict[str, type[SAE]] = {}


def register(name: str):
    def deco(cls):
        cls.architecture = name
        SAE_REGISTRY[name] = cls
        return cls

    return deco


class SAE(nn.Module):
    """Base SAE. Subclasses define `activation` (pre-activations → sparse codes)."""

    architecture: ClassVar[str] = "base"

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        if cfg.d_in <= 0 or cfg.d_sae <= 0:
            raise QscopeError(f"SAE sizes must be positive, got d_in={cfg.d_in}, d_sae={cfg.d_sae}")
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.reset_parameters()

    # --- construction -------------------------------------------------------------------------------
    @staticmethod
    def from_config(cfg: SAEConfig) -> SAE:
        if cfg.architecture not in SAE_REGISTRY:
            raise QscopeError(f"unknown SAE architecture {cfg.architecture!r}; known: {sorted(SAE_REGISTRY)}")
        return SAE_REGISTRY[cfg.architecture](cfg)

    def reset_parameters(self) -> None:
        # Decoder rows unit-norm, encoder = decoder transpose: the standard init (Anthropic / sparsify).
        nn.init.kaiming_uniform_(self.W_dec)
        with torch.no_grad():
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)
            self.W_enc.copy_(self.W_dec.T)

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def sae_id(self) -> str:
        return self.cfg.sae_id or f"{self.cfg.architecture}-{self.d_in}x{self.d_sae}"

    # --- math -----------------------------------------------------------------------------------------
    def weights_hash(self) -> str:
        """BLAKE2b over the architecture, config and every weight (as float32 bytes): what signatures computed
        with this SAE are keyed by, so a retrained SAE under the same id is never mistaken for the old one."""
        import hashlib

        h = hashlib.blake2b(digest_size=12)
        h.update(
            json.dumps(
                {"arch": self.cfg.architecture, "k": self.cfg.k, "b_dec_in": self.cfg.apply_b_dec_to_input},
                sort_keys=True,
            ).encode()
        )
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    def _check_input(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.d_in:
            raise ShapeMismatchError(
                f"SAE {self.sae_id} expects inputs of width d_in={self.d_in}, got {x.shape[-1]} "
                "(is this SAE for another model or layer?)"
            )

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activation(self, pre: torch.Tensor) -> SparseCodes:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> SparseCodes:
        """Sparse codes for `x` [..., d_in] flattened to rows [n, d_in]."""
        return self.activation(self.pre_acts(x.reshape(-1, x.shape[-1])))

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.encode(x)
        return codes.to_dense(self.d_sae).reshape(*x.shape[:-1], self.d_sae)

    def decode(self, codes: SparseCodes) -> torch.Tensor:
        # Gather only the active decoder rows: O(n·m·d_in) instead of O(n·d_sae·d_in).
        rows = self.W_dec[codes.indices]  # [n, m, d_in]
        return torch.einsum("nm,nmd->nd", codes.values.to(rows.dtype), rows) + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of `x`."""
        flat = x.reshape(-1, x.shape[-1])
        return self.decode(self.encode(flat)).reshape(x.shape)

    @staticmethod
    def _sparse_from_mask(acts: torch.Tensor) -> SparseCodes:
        """Turn a mostly-zero activation matrix into padded (indices, values), width = max row L0."""
        width = max(int((acts > 0).sum(-1).max().item()) if acts.numel() else 0, 1)
        values, indices = acts.topk(width, dim=-1, sorted=False)
        return SparseCodes(indices, values.clamp_min(0))

    def save(self, path, dtype: torch.dtype | None = None):
        """Save in the SAELens layout (cfg.json + sae_weights.safetensors), atomically."""
        from qscope.sae.formats import save_saelens

        return save_saelens(self, path, dtype)

    def extra_repr(self) -> str:
        return json.dumps({k: v for k, v in self.cfg.to_dict().items() if k != "metadata"})
