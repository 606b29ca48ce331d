"""How good is an SAE? Reconstruction (EV, MSE), sparsity (L0, dead latents) and faithfulness to the LM
(CE-loss recovered, KL, delta loss) measured by splicing the reconstruction into the forward pass.

Splicing: a forward hook on block L replaces its output (the residual stream after block L, the SAE's hook
point) by the SAE's reconstruction at every evaluation token, and the rest of the network runs on it.
Position 0 and special tokens keep their original residual in every run (spliced and zero-ablated): the sink
position carries a residual ~100x larger than any other, SAEs are not trained on it, and every later token
attends to it as a no-op. Replacing it would measure how badly the attention sink breaks, not how well the
SAE reads text — and the sink's own prediction is the same in all runs, so it is also left out of the losses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from qscope.errors import InputError, ShapeMismatchError
from qscope.evaluation.texts import EvalTexts, eval_token_mask, plan_eval
from qscope.features import drop_norm_outliers

log = logging.getLogger(__name__)

METRIC_KEYS = (
    "explained_variance",
    "mse",
    "l0",
    "dead_fraction",
    "ce_loss_recovered",
    "kl_div",
    "delta_lm_loss",
    "ce_clean",
    "ce_spliced",
    "ce_zero_ablation",
)
"""The SAE's numbers in `SAEEvalResult` (None where not measured)."""
JSON_KEYS = (*METRIC_KEYS, "n_tokens", "sae", "layer")
"""The stable `qscope eval-sae --json` contract (extra keys may follow these)."""


@dataclass
class SAEEvalResult:
    """Metrics of one SAE at one layer over `n_tokens` evaluation tokens."""

    explained_variance: float
    """1 - SSE/SST pooled over tokens and dimensions; SST around the per-dimension mean of the eval tokens."""
    mse: float
    """Mean squared reconstruction error per element (SSE / (n_tokens * d_in))."""
    l0: float
    """Mean number of active latents per token."""
    dead_fraction: float
    """Fraction of latents that never fired on any evaluation token."""
    ce_loss_recovered: float
    """(CE_zero_ablation - CE_spliced) / (CE_zero_ablation - CE_clean): 1 = as good as the clean model."""
    kl_div: float
    """Mean KL(clean || spliced) of next-token distributions, nats per token."""
    delta_lm_loss: float
    """CE_spliced - CE_clean, nats per token."""
    ce_clean: float
    ce_spliced: float
    ce_zero_ablation: float
    """CE with the residual after block L set to zero (at the evaluation tokens)."""
    n_tokens: int
    """Tokens the reconstruction metrics ran over (position 0, padding and special tokens excluded)."""
    sae: str
    layer: int
    model: str = ""
    n_loss_tokens: int = 0
    """Next-token predictions the losses averaged over."""
    n_texts: int = 0
    text_source: str = ""

    def to_json(self) -> dict:
        """Flat, JSON-safe dict; NaN (e.g. CE recovered when ablation does not hurt) becomes None."""
        out = {}
        for key, value in dataclasses.asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return {k: out[k] for k in JSON_KEYS} | {k: v for k, v in out.items() if k not in JSON_KEYS}


def _block_output(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _with_rows(output, mask: torch.Tensor, rows: torch.Tensor):
    """`output` of a block with its hidden state at `mask` replaced by `rows` (same container type)."""
    hidden = _block_output(output)
    new = hidden.clone()
    new[mask] = rows.to(hidden.dtype)
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    return new


@contextlib.contextmanager
def replace_residual(block: torch.nn.Module, mask: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]):
    """While active, the output of `block` at positions `mask` [batch, seq] becomes `fn(original rows)`."""

    def hook(_module, _inputs, output):
        return _with_rows(output, mask, fn(_block_output(output)[mask]))

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def resume_after(blocks: torch.nn.ModuleList, layer: int, output_at_layer):
    """Rerun only the blocks after `layer`: earlier blocks pass their input through, block `layer` returns
    `output_at_layer` (computed once by the clean run). Saves ~(layer+1)/n_layers of each extra forward."""

    def passthrough(*args, **kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden,) if isinstance(output_at_layer, tuple) else hidden

    def fixed(*_args, **_kwargs):
        return output_at_layer

    for i in range(layer):
        blocks[i].forward = passthrough
    blocks[layer].forward = fixed
    try:
        yield
    finally:
        for i in range(layer + 1):
            del blocks[i].forward  # back to the class's forward


def _logits(lm, hidden: torch.Tensor) -> torch.Tensor:
    logits = lm.model.get_output_embeddings()(hidden).float()
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


class _Accumulator:
    """Streaming sums in float64 so that EV does not suffer from cancellation over many tokens."""

    def __init__(self, d_in: int, d_sae: int):
        self.n = 0
        self.sum_x = torch.zeros(d_in, dtype=torch.float64)
        self.sum_x2 = torch.zeros(d_in, dtype=torch.float64)
        self.sse = 0.0
        self.l0_sum = 0
        self.fired = torch.zeros(d_sae, dtype=torch.bool)
        self.n_loss = 0
        self.ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
        self.kl = 0.0

    def add_reconstruction(self, x: torch.Tensor, x_hat: torch.Tensor, codes) -> None:
        x64 = x.detach().double().cpu()
        self.n += x64.shape[0]
        self.sum_x += x64.sum(0)
        self.sum_x2 += (x64 * x64).sum(0)
        self.sse += float(((x64 - x_hat.detach().double().cpu()) ** 2).sum())
        active = codes.values > 0
        self.l0_sum += int(active.sum())
        self.fired[codes.indices[active].cpu()] = True

    def sst(self) -> float:
        return float((self.sum_x2 - self.sum_x**2 / max(self.n, 1)).sum())


@torch.no_grad()
def evaluate_sae(
    lm,
    sae,
    texts: Sequence[str] | EvalTexts,
    layer: int | None = None,
    n_tokens: int = 16384,
    batch_tokens: int = 4096,
    max_length: int | None = None,
    seed: int = 0,
    progress: bool = False,
    reuse_prefix: bool = True,
) -> SAEEvalResult:
    """Evaluate `sae` on the residual stream after block `layer` (default: the SAE's own) of `lm`.

    Uses about `n_tokens` tokens from a seeded shuffle of `texts` (see `select_texts`). Three forwards per
    batch: clean, SAE-spliced, zero-ablated. With `reuse_prefix` (default) the spliced and zero-ablated runs
    start from the clean run's block-`layer` output instead of recomputing blocks 0..layer (same numbers, tested
    against the plain-hook path `reuse_prefix=False`).
    """
    run = plan_eval(lm, sae, texts, layer, n_tokens, max_length, batch_tokens, seed, progress, desc="eval")
    layer, max_length, source, special = run.layer, run.max_length, run.source, run.special_ids
    block = lm.layers[layer]
    acc = _Accumulator(sae.d_in, sae.d_sae)
    sae_was_training = sae.training
    sae.eval()

    def splice(x: torch.Tensor) -> torch.Tensor:
        codes = sae.encode(x)
        x_hat = sae.decode(codes).reshape(x.shape)
        acc.add_reconstruction(x, x_hat, codes)
        return x_hat

    try:
        for batch in run.batches:
            enc, _ = lm.tokenize(batch, max_length)
            ids, attn = enc["input_ids"], enc["attention_mask"]
            mask = eval_token_mask(ids, attn, special)
            # Prediction at position t (t >= 1) of token t+1, both real tokens.
            loss_mask = attn[:, :-1].bool() & attn[:, 1:].bool()
            loss_mask[:, 0] = False
            targets = ids[:, 1:][loss_mask]
            finals = {}
            if reuse_prefix:
                captured = {}

                def capture(_module, _inputs, output):
                    # Cloned: later blocks must not be able to alter it in place.
                    hidden = _block_output(output).clone()
                    # B023 does not apply: the hook lives only within this iteration (removed below).
                    captured["out"] = (hidden, *output[1:]) if isinstance(output, (tuple, list)) else hidden  # noqa: B023

                handle = block.register_forward_hook(capture)
                try:
                    finals["clean"] = _final_hidden(lm, ids, attn, loss_mask)
                finally:
                    handle.remove()
                clean_out = captured["out"]
                mask = drop_norm_outliers(mask, _block_output(clean_out))
                x = _block_output(clean_out)[mask]
                for name, rows in (("spliced", splice(x)), ("zero", torch.zeros_like(x))):
                    with resume_after(lm.layers, layer, _with_rows(clean_out, mask, rows)):
                        finals[name] = _final_hidden(lm, ids, attn, loss_mask)
            else:  # reference path: three full forwards, the replacement done by a hook
                mask = drop_norm_outliers(mask, lm.residuals(batch, [layer], max_length).hidden[layer])
                for name, ctx in (
                    ("clean", contextlib.nullcontext()),
                    ("spliced", replace_residual(block, mask, splice)),
                    ("zero", replace_residual(block, mask, torch.zeros_like)),
                ):
                    with ctx:
                        finals[name] = _final_hidden(lm, ids, attn, loss_mask)
            _add_losses(lm, acc, finals, targets)
    finally:
        sae.train(sae_was_training)

    if acc.n == 0:
        raise InputError("no evaluation tokens (texts too short?)")
    sst = acc.sst()
    n_loss = max(acc.n_loss, 1)
    ce_clean, ce_spliced, ce_zero = (acc.ce[k] / n_loss for k in ("clean", "spliced", "zero"))
    denom = ce_zero - ce_clean
    return SAEEvalResult(
        explained_variance=1.0 - acc.sse / sst if sst > 0 else float("nan"),
        mse=acc.sse / (acc.n * sae.d_in),
        l0=acc.l0_sum / acc.n,
        dead_fraction=float((~acc.fired).sum()) / sae.d_sae,
        ce_loss_recovered=(ce_zero - ce_spliced) / denom if abs(denom) > 1e-12 else float("nan"),
        kl_div=acc.kl / n_loss,
        delta_lm_loss=ce_spliced - ce_clean,
        ce_clean=ce_clean,
        ce_spliced=ce_spliced,
        ce_zero_ablation=ce_zero,
        n_tokens=acc.n,
        sae=sae.sae_id,
        layer=layer,
        model=getattr(lm, "name", ""),
        n_loss_tokens=acc.n_loss,
        n_texts=run.n_texts,
        text_source=source,
    )


def _final_hidden(lm, ids, attn, loss_mask) -> torch.Tensor:
    out = lm.model.model(input_ids=ids, attention_mask=attn, use_cache=False)
    return out.last_hidden_state[:, :-1][loss_mask]


def _add_losses(lm, acc: _Accumulator, finals: dict, targets: torch.Tensor, chunk: int = 1024) -> None:
    # Logits only at the loss positions, in row chunks: a full [batch, seq, vocab] tensor would not fit.
    for start in range(0, targets.shape[0], chunk):
        tgt = targets[start : start + chunk]
        logp = {k: torch.log_softmax(_logits(lm, v[start : start + chunk]), dim=-1) for k, v in finals.items()}
        for k, lp in logp.items():
            acc.ce[k] += float(-lp.gather(1, tgt[:, None]).double().sum())
        clean = logp["clean"]
        acc.kl += float((clean.exp() * (clean - logp["spliced"])).sum(-1).clamp_min(0).double().sum())
        acc.n_loss += tgt.shape[0]


def _resolve_layer(lm, sae, layer: int | None) -> int:
    layer = sae.cfg.hook_layer if layer is None else layer
    if layer is None:
        raise InputError(f"SAE {sae.sae_id} does not record its hook layer; pass layer= / --layer")
    lm.check_layer(int(layer))
    if sae.d_in != lm.d_model:
        raise ShapeMismatchError(f"SAE {sae.sae_id} has d_in={sae.d_in} but {lm.name} has hidden size {lm.d_model}")
    return int(layer)
