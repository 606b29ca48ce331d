"""Trained SAE → `qscope.sae.SAE`: fold the input normalization into the weights, calibrate JumpReLU thresholds,
measure explained variance / L0 / dead fraction on held-out activations."""

from __future__ import annotations

from typing import NamedTuple

import torch

from qscope.sae import SAE, SAEConfig
from qscope.training.sparse_sae import TrainableSAE


class HeldoutMetrics(NamedTuple):
    """Reconstruction quality of an exported SAE on raw held-out activations."""

    explained_variance: float
    mse: float
    l0: float
    dead_fraction: float  # latents that never fire on these tokens
    n_tokens: int

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self._asdict().items()}


@torch.no_grad()
def export_sae(trained: TrainableSAE, scale: float, cfg: SAEConfig, threshold: float | None = None) -> SAE:
    """Build the inference SAE that takes *raw* residuals.

    Training saw x·s. With x_n = x·s: pre = (x_n - b) W_enc + b_enc = (x - b/s)(s·W_enc) + b_enc and
    x̂ = (z W_dec + b)/s = z (W_dec/s) + b/s, so W_enc·s, W_dec/s, b_dec/s give identical codes and reconstructions.
    """
    sae = SAE.from_config(cfg)
    sae.W_enc.copy_(trained.W_enc * scale)
    sae.b_enc.copy_(trained.b_enc)
    sae.W_dec.copy_(trained.W_dec / scale)
    sae.b_dec.copy_(trained.b_dec / scale)
    if cfg.architecture == "jumprelu":
        if threshold is None:
            raise ValueError("a jumprelu export needs a calibrated threshold")
        sae.threshold.fill_(threshold)
    return sae


@torch.no_grad()
def calibrate_threshold(sae: SAE, acts: torch.Tensor, k: int, chunk: int = 2048) -> float:
    """Global JumpReLU threshold θ at which the mean L0 over `acts` is k (BatchTopK's own selection rule).

    BatchTopK keeps the k·n largest pre-activations of a batch, i.e. everything above the batch's (k·n)-th value;
    fixing θ to that value over a large held-out sample gives an inference rule that needs no batch. Each row
    keeps its 8k largest values (a token firing more than 8k latents is vanishingly rare), so memory stays small.
    """
    keep = min(8 * k, sae.d_sae)
    tops = [sae.pre_acts(acts[i : i + chunk]).topk(keep, dim=1).values.flatten() for i in range(0, len(acts), chunk)]
    values = torch.cat(tops)
    n_select = min(k * len(acts), len(values))
    return float(values.topk(n_select).values.min())


@torch.no_grad()
def heldout_metrics(sae: SAE, acts: torch.Tensor, chunk: int = 2048) -> HeldoutMetrics:
    sq_err, l0, n = 0.0, 0.0, len(acts)
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    for i in range(0, n, chunk):
        x = acts[i : i + chunk]
        codes = sae.encode(x)
        x_hat = sae.decode(codes)
        sq_err += float((x_hat - x).pow(2).sum())
        active = codes.values > 0
        l0 += float(active.sum())
        fired[codes.indices[active]] = True
    total_var = float((acts - acts.mean(0)).pow(2).sum())
    return HeldoutMetrics(
        1 - sq_err / total_var, sq_err / (n * acts.shape[1]), l0 / n, 1 - float(fired.float().mean()), n
    )


def round_trip(sae: SAE, dtype: torch.dtype) -> SAE:
    """The SAE as it will be loaded after saving in `dtype` (metrics describe the shipped weights)."""
    if dtype == torch.float32:
        return sae
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return sae
