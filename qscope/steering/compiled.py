"""An intervention compiled to per-layer tensors, and the one function that edits the residual stream.

Both engines run exactly this code (`LayerSteering.delta`): the HF engine inside a forward hook on the decoder
block, the vLLM worker extension inside a hook on vLLM's decoder layer. Only how `x`, the token positions and
the per-token prompt lengths are obtained differs per engine.

Compilation is split in two so vLLM's RPC payload stays small: `compile_plan` (driver side) turns validated edits
+ calibration into plain numbers (`SteeringPlan`: feature, op, coefficient, positions per layer); `LayerSteering`
(both sides) turns one layer's plan + its SAE into tensors.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import torch

POSITION_CODES = {"all": 0, "prompt": 1, "generated": 2}


@dataclasses.dataclass(frozen=True)
class PlannedEdit:
    """A validated edit with its strength already multiplied by the feature's scale (SAE activation units)."""

    op: str
    feature: int
    coefficient: float  # activate: added activation; suppress: fraction removed; clamp: target activation
    positions: str


@dataclasses.dataclass(frozen=True)
class SteeringPlan:
    """layer -> planned edits. Plain data (msgpack/JSON-able) for `collective_rpc`."""

    layers: dict[int, tuple[PlannedEdit, ...]]

    def to_payload(self) -> dict:
        return {str(layer): [dataclasses.asdict(e) for e in edits] for layer, edits in self.layers.items()}

    @classmethod
    def from_payload(cls, payload: Mapping) -> "SteeringPlan":
        return cls({int(layer): tuple(PlannedEdit(**e) for e in edits) for layer, edits in payload.items()})


def compile_plan(intervention, calibrations: Mapping[int, object]) -> SteeringPlan:
    """Validated intervention + per-layer `StrengthCalibration` -> SteeringPlan."""
    layers: dict[int, list[PlannedEdit]] = {}
    for e in intervention.edits:
        if e.op == "suppress":
            coef = float(e.strength)  # unitless fraction
        else:
            scale = e.scale if e.scale is not None else calibrations[e.layer].scale(e.feature)
            coef = float(e.strength) * float(scale)
        layers.setdefault(e.layer, []).append(PlannedEdit(e.op, int(e.feature), coef, e.positions))
    return SteeringPlan({layer: tuple(edits) for layer, edits in sorted(layers.items())})


def position_masks(positions: torch.Tensor, prompt_lens: torch.Tensor) -> torch.Tensor:
    """[3, *positions.shape] bool: rows all / prompt / generated (see intervention module docstring)."""
    all_ = positions >= 1
    prompt = all_ & (positions < prompt_lens)
    generated = all_ & (positions >= prompt_lens - 1)
    return torch.stack([all_, prompt, generated])


class LayerSteering:
    """One layer's edits as tensors. `delta(x, masks)` returns what to add to the residual stream x [n, d]."""

    def __init__(self, edits: tuple[PlannedEdit, ...], sae):
        self.sae = sae
        W_dec = sae.W_dec.detach()
        dtype = W_dec.dtype
        # activate: one summed vector per positions mode (feature contribution at `coefficient` activation)
        adds: dict[int, torch.Tensor] = {}
        for e in edits:
            if e.op == "activate":
                code = POSITION_CODES[e.positions]
                vec = W_dec[e.feature] * torch.tensor(e.coefficient, dtype=dtype)
                adds[code] = adds[code] + vec if code in adds else vec
        self.add_codes = sorted(adds)
        self.add_vectors = torch.stack([adds[c] for c in self.add_codes]) if adds else None  # [a, d]
        # suppress / clamp: SAE-space edits of the feature's current activation
        sc = [e for e in edits if e.op in ("suppress", "clamp")]
        self.edit_features = torch.tensor([e.feature for e in sc], dtype=torch.long)
        self.edit_is_clamp = torch.tensor([e.op == "clamp" for e in sc], dtype=torch.bool)
        self.edit_coef = torch.tensor([e.coefficient for e in sc], dtype=dtype)
        self.edit_codes = torch.tensor([POSITION_CODES[e.positions] for e in sc], dtype=torch.long)
        # Moving x by a·W_dec[f] moves f's pre-activation by a·(W_enc[:, f]·W_dec[f]); that overlap is ~0.7, not 1,
        # in trained SAEs, so an edit along the plain decoder row would leave ~30% of a suppressed feature. Rows are
        # divided by the overlap so the edited feature lands on its target when re-encoded, while everything
        # orthogonal to W_dec[f] (incl. the SAE's reconstruction error) is untouched. The floor guards SAEs
        # whose encoder barely reads a latent's own decoder direction.
        if sc:
            overlap = (sae.W_enc.detach()[:, self.edit_features].T * W_dec[self.edit_features]).sum(-1)
            self.edit_rows = W_dec[self.edit_features] / overlap.clamp_min(0.05).unsqueeze(-1)  # [m, d]
        else:
            self.edit_rows = None

    @property
    def is_empty(self) -> bool:
        return self.add_vectors is None and self.edit_rows is None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "LayerSteering":
        for name in ("add_vectors", "edit_rows", "edit_coef"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device=device, dtype=dtype or t.dtype))
        self.edit_features = self.edit_features.to(device)
        self.edit_is_clamp = self.edit_is_clamp.to(device)
        self.edit_codes = self.edit_codes.to(device)
        return self

    def feature_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Current SAE activations of the edited features [n, m], exactly as `sae.encode` would give them.

        Cheap path: the edited features' own pre-activations (m encoder columns). ReLU / JumpReLU activations
        follow from them directly. TopK also needs each token's k-th largest pre-activation, i.e. the full
        encoder, but only on tokens where an edited feature's pre-activation is > 0 (elsewhere its activation
        is 0 whatever the top-k): sparse features make that a small fraction of tokens.
        """
        sae = self.sae
        xs = x.to(sae.W_enc.dtype)
        if sae.cfg.apply_b_dec_to_input:
            xs = xs - sae.b_dec
        pre = xs @ sae.W_enc[:, self.edit_features] + sae.b_enc[self.edit_features]  # [n, m]
        arch = sae.cfg.architecture
        if arch == "relu":
            return pre.relu().to(x.dtype)
        if arch == "jumprelu":
            return (pre * (pre > sae.threshold[self.edit_features])).to(x.dtype)
        acts = torch.zeros_like(pre)
        rows = (pre > 0).any(dim=1).nonzero().squeeze(1)
        if rows.numel():
            codes = sae.encode(x[rows].to(sae.W_enc.dtype))
            # match the sparse codes against the edited ids instead of building a dense [n, d_sae] tensor
            hit = codes.indices.unsqueeze(-1) == self.edit_features  # [r, k, m]
            acts[rows] = (hit * codes.values.unsqueeze(-1)).sum(1)
        return acts.to(x.dtype)

    def delta(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """x: [n, d] residual stream; masks: [3, n] bool from `position_masks`. Returns [n, d] (zeros off-mask).

        With every strength 0 the result is exactly zero, so x + delta == x bit for bit.
        """
        delta = torch.zeros_like(x)
        if self.add_vectors is not None:
            m = masks[self.add_codes].to(x.dtype)  # [a, n]
            delta = delta + m.T @ self.add_vectors.to(x.dtype)
        if self.edit_rows is not None:
            acts = self.feature_acts(x)  # [n, m]
            target = torch.where(self.edit_is_clamp, self.edit_coef, (1 - self.edit_coef) * acts)
            change = (target - acts) * masks[self.edit_codes].T.to(x.dtype)  # [n, m]
            delta = delta + change @ self.edit_rows.to(x.dtype)
        return delta


def build_layers(plan: SteeringPlan, saes: Mapping[int, object]) -> dict[int, LayerSteering]:
    out = {}
    for layer, edits in plan.layers.items():
        steering = LayerSteering(edits, saes[layer])
        if not steering.is_empty:
            out[layer] = steering
    return out
