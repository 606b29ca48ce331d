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
from collections.abc import Mapping

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

    def key(self) -> str:
        """Content hash: equal plans share compiled tensors (vLLM worker cache) and batches (HF engine)."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_payload(), sort_keys=True).encode()).hexdigest()[:24]

    @classmethod
    def from_payload(cls, payload: Mapping) -> SteeringPlan:
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
        # Moving x by a·W_dec[f] moves f's pre-activation by a·(W_enc[:, f]·W_dec[f]); that overlap is well below 1
        # in trained SAEs (bench/README.md), so an edit along the plain decoder row would leave part of a suppressed
        # feature. Rows are divided by the overlap so the edited feature lands on its target when re-encoded, while
        # everything orthogonal to W_dec[f] (incl. the SAE's reconstruction error) is untouched. The floor guards
        # SAEs whose encoder barely reads a latent's own decoder direction.
        self.edit_rows = self.enc_cols = self.enc_bias = self.probe_W = self.probe_b = None
        if sc:
            W_enc = sae.W_enc.detach()
            overlap = (W_enc[:, self.edit_features].T * W_dec[self.edit_features]).sum(-1)
            self.edit_rows = W_dec[self.edit_features] / overlap.clamp_min(0.05).unsqueeze(-1)  # [m, d]
            # gathered once here, not per forward: contiguous copies of the few encoder columns read every step
            self.enc_cols = W_enc[:, self.edit_features].contiguous()  # [d, m]
            self.enc_bias = sae.b_enc.detach()[self.edit_features].clone()
            if sae.cfg.architecture == "topk":
                self._build_probe(W_enc)

    @property
    def is_empty(self) -> bool:
        return self.add_vectors is None and self.edit_rows is None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> LayerSteering:
        for name in ("add_vectors", "edit_rows", "edit_coef"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device=device, dtype=dtype or t.dtype))
        for name in ("enc_cols", "enc_bias", "probe_W", "probe_b"):  # SAE-side: keep the SAE's dtype
            t = getattr(self, name, None)
            if t is not None:
                setattr(self, name, t.to(device))
        self.edit_features = self.edit_features.to(device)
        self.edit_is_clamp = self.edit_is_clamp.to(device)
        self.edit_codes = self.edit_codes.to(device)
        return self

    # TopK probe: a few hundred encoder columns whose k-th largest pre-activation bounds the row's k-th from below
    PROBE_FRACTION = 8  # probe width = d_sae / 8 (at least 4k): measured on the shipped SAE, see _build_probe

    def _build_probe(self, W_enc: torch.Tensor) -> None:
        """Pick the probe columns of a TopK SAE once per build.

        Any >= k columns give an exact lower bound on a token's k-th largest pre-activation; columns with large
        encoder norms swing widest, so they land in the top-k most often and make the bound tight: on the shipped
        SAE a typical feature's pre-activation is > 0 on a large share of tokens but above the bound on a few
        percent (bench/README.md, "Measurements behind the code").
        """
        sae = self.sae
        d_sae, k = sae.cfg.d_sae, int(sae.cfg.k)
        width = min(d_sae, max(d_sae // self.PROBE_FRACTION, 4 * k))
        probe = W_enc.norm(dim=0).topk(width).indices.sort().values
        self.probe_W = W_enc[:, probe].T.contiguous()  # [s, d]: F.linear's layout
        self.probe_b = sae.b_enc.detach()[probe].clone()
        # Float rounding: any dot product here or in `sae.pre_acts` is within gamma_d * (|x| |w| + |b|) of exact
        # (gamma_d ~ d * eps / 2, whatever the summation order), so the feature-vs-bound comparison can be off by
        # 4 gamma_d = 2 d eps at most. Tokens are skipped only below bound - 8 d eps (|x| w_max + b_max): 4x headroom,
        # so no kernel choice or batch shape can skip a token that `sae.encode` would have made active.
        w_max = max(float(W_enc[:, probe].norm(dim=0).max()), float(self.enc_cols.norm(dim=0).max()))
        b_max = float(sae.b_enc.detach().abs().max())
        eps = torch.finfo(W_enc.dtype).eps
        self.round_tol = (8.0 * sae.cfg.d_in * eps, w_max, b_max)

    def feature_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Current SAE activations of the edited features [n, m], exactly as `sae.encode` would give them.

        Cheap path: the edited features' own pre-activations (m encoder columns). ReLU / JumpReLU activations
        follow from them directly. TopK also needs each token's k-th largest pre-activation, which needs the
        whole encoder (19 MB read per step for 8192 x 576 in float32, memory-bound on CPU), and a trained SAE's
        pre-activations are > 0 on a large share of tokens, so filtering on that alone ran it nearly every decode
        step (bench/README.md). So: (1) the probe columns give a lower bound on the k-th largest;
        a feature below it (or <= 0) is inactive, whatever the other columns hold; (2) only the few tokens where
        an edited feature reaches the bound get the full pre-activations (`sae.pre_acts`, encode's own
        arithmetic) and their k-th largest value. No sparse codes are built. Ties at the k-th value count as
        active (torch.topk's pick among exact ties is unspecified anyway).
        """
        sae = self.sae
        xs = x.to(self.enc_cols.dtype)
        if sae.cfg.apply_b_dec_to_input:
            xs = xs - sae.b_dec
        pre = xs @ self.enc_cols + self.enc_bias  # [n, m]
        arch = sae.cfg.architecture
        if arch == "relu":
            return pre.relu().to(x.dtype)
        if arch == "jumprelu":
            return (pre * (pre > sae.threshold[self.edit_features])).to(x.dtype)
        k = int(sae.cfg.k)
        bound = torch.nn.functional.linear(xs, self.probe_W, self.probe_b).topk(k, dim=-1).values[:, -1:]  # [n, 1]
        scale, w_max, b_max = self.round_tol
        tol = scale * (xs.norm(dim=-1, keepdim=True) * w_max + b_max)
        acts = torch.zeros_like(pre)
        rows = ((pre > 0) & (pre >= bound - tol)).any(dim=1).nonzero().squeeze(1)
        if rows.numel():
            full = sae.pre_acts(x[rows])  # [r, d_sae], exactly encode's pre-activations
            kth = full.topk(k, dim=-1).values[:, -1:]
            own = full[:, self.edit_features]
            acts[rows] = torch.where(own >= kth, own.relu(), torch.zeros_like(own))
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
