"""The trainable SAE: dense encoder matmul, sparse selection, sparse decoder, sparse encoder gradient.

Cost per step on CPU is dominated by the encoder (n·d_in·d_sae multiply-adds). Everything after selection
touches only the active latents: the decoder gathers k rows per token (`embedding_bag` with per-sample weights),
and the encoder gradient is a sparse [d_sae, n] × dense [n, d_in] product instead of a second dense matmul.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Selection(NamedTuple):
    """Active (token, latent) pairs in row-major order; `offsets[i]` = first pair of token i (embedding_bag)."""

    rows: torch.Tensor  # int64 [m]
    cols: torch.Tensor  # int64 [m]
    pre: torch.Tensor  # float [m], pre-activations (no grad), > 0
    offsets: torch.Tensor  # int64 [n]


class ForwardOutput(NamedTuple):
    """One training forward on a batch of (normalized) inputs."""

    x_hat: torch.Tensor  # [n, d_in]
    fvu: torch.Tensor  # fraction of variance unexplained (the reconstruction loss)
    auxk_loss: torch.Tensor  # AuxK loss (0 when no latent is dead)
    selection: Selection


class _SelectedPreacts(torch.autograd.Function):
    """Values of pre-activations at selected (row, col), with a sparse backward into W_enc and b_enc."""

    @staticmethod
    def forward(ctx, pre, x, W_enc, b_enc, rows, cols):
        ctx.save_for_backward(x, rows, cols)
        ctx.d_sae = W_enc.shape[1]
        return pre.clone()

    @staticmethod
    def backward(ctx, grad):
        x, rows, cols = ctx.saved_tensors
        n = x.shape[0]
        # dL/dW_enc[:, j] = Σ_i g_ij x_i over the selected pairs only: a sparse [d_sae, n] @ dense [n, d_in].
        g_t = torch.sparse_coo_tensor(
            torch.stack([cols, rows]), grad, (ctx.d_sae, n), check_invariants=False
        ).coalesce()
        grad_w = torch.sparse.mm(g_t, x).t().contiguous()  # Adam's elementwise ops run faster on contiguous grads
        grad_b = torch.zeros(ctx.d_sae, dtype=grad.dtype, device=grad.device).index_add_(0, cols, grad)
        return None, None, grad_w, grad_b, None, None


class TrainableSAE(nn.Module):
    """TopK / BatchTopK SAE in the SAELens orientation, trained on normalized inputs (x - b_dec encoded)."""

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        k: int,
        architecture: str = "topk",
        k_aux: int | None = None,
        generator: torch.Generator | None = None,
        init_encoder_norm: float = 1.0,
    ):
        super().__init__()
        self.d_in, self.d_sae, self.k, self.architecture = d_in, d_sae, k, architecture
        self.k_aux = min(k_aux or d_in // 2, d_sae)
        w = torch.empty(d_sae, d_in)
        # qscope.sae.SAE's init (kaiming-uniform rows, unit norm, W_enc ∝ W_dec^T), seeded; the encoder scaled by
        # `init_encoder_norm` (see SAETrainConfig: a smaller encoder starts TopK from smaller, better-sized codes).
        bound = (6 / d_in) ** 0.5
        w.uniform_(-bound, bound, generator=generator)
        w /= w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.t() * init_encoder_norm)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    # --- encoding -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    @torch.no_grad()
    def select(self, pre: torch.Tensor, k: int, batch: bool) -> Selection:
        """TopK per row, or (batch=True) the k·n largest over the whole batch; non-positive values dropped."""
        n = pre.shape[0]
        if batch:
            # Two stages: each row's 4k best, then the k·n best of those. Same result as a topk over the whole
            # [n, d_sae] matrix unless one token would take more than 4k latents, and cheaper on CPU (bench/README.md).
            cand_vals, cand_cols = pre.topk(min(4 * k, pre.shape[1]), dim=1, sorted=False)
            vals, flat = cand_vals.flatten().topk(k * n, sorted=False)
            flat, order = flat.sort()  # row-major, as embedding_bag offsets need
            vals = vals[order]
            rows = flat // cand_cols.shape[1]
            cols = cand_cols.flatten()[flat]
        else:
            vals, cols = pre.topk(k, dim=1, sorted=False)
            rows = torch.arange(n, device=pre.device).repeat_interleave(k)
            vals, cols = vals.flatten(), cols.flatten()
        keep = vals > 0
        if not bool(keep.all()):
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        counts = torch.bincount(rows, minlength=n)
        offsets = torch.cumsum(counts, 0) - counts
        return Selection(rows, cols, vals, offsets)

    def selected_values(self, sel: Selection, x_centered: torch.Tensor) -> torch.Tensor:
        """Selected pre-activations as a differentiable function of W_enc / b_enc (sparse backward)."""
        return _SelectedPreacts.apply(sel.pre, x_centered, self.W_enc, self.b_enc, sel.rows, sel.cols)

    def decode_sparse(self, sel: Selection, values: torch.Tensor) -> torch.Tensor:
        """Σ_j values_j · W_dec[col_j] per token, touching only the active rows (no b_dec)."""
        return F.embedding_bag(sel.cols, self.W_dec, sel.offsets, mode="sum", per_sample_weights=values)

    # --- training forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, dead_mask: torch.Tensor | None = None) -> ForwardOutput:
        x_centered = x - self.b_dec.detach()
        pre = self.pre_acts(x)
        sel = self.select(pre, self.k, batch=self.architecture == "batchtopk")
        x_hat = self.decode_sparse(sel, self.selected_values(sel, x_centered)) + self.b_dec
        err = x_hat - x
        # Normalising by the batch's total variance makes the loss 1 - explained variance (scale-free).
        total_variance = (x - x.mean(0)).pow(2).sum()
        fvu = err.pow(2).sum() / total_variance
        auxk_loss = x.new_zeros(())
        if dead_mask is not None and bool(dead_mask.any()):
            auxk_loss = self._auxk_loss(pre, dead_mask, x_centered, err, total_variance)
        return ForwardOutput(x_hat, fvu, auxk_loss, sel)

    def _auxk_loss(self, pre, dead_mask, x_centered, err, total_variance) -> torch.Tensor:
        """Gao et al.: the top-k_aux dead latents predict the main reconstruction's error (gradient only to them)."""
        n_dead = int(dead_mask.sum())
        k_aux = min(self.k_aux, n_dead)
        # Select among the dead columns only (usually a small minority): no full-size masked copy of `pre`.
        dead_idx = dead_mask.nonzero().squeeze(1)
        sel = self.select(pre.index_select(1, dead_idx), k_aux, batch=False)
        if sel.rows.numel() == 0:
            return pre.new_zeros(())
        sel = sel._replace(cols=dead_idx[sel.cols])
        e_hat = self.decode_sparse(sel, self.selected_values(sel, x_centered))
        # Down-weight while few latents are dead, as sparsify does: the aux loss of 3 dead latents is noisy.
        scale = min(n_dead / self.k_aux, 1.0)
        return scale * (e_hat - (-err).detach()).pow(2).sum() / total_variance

    # --- decoder geometry ---------------------------------------------------------------------------------
    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        # Rows are renormalised after every step, so the radial part of the gradient is wasted; removing it
        # keeps Adam's moments about the directions that matter (sparsify / Anthropic).
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    # --- initialisation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def init_b_dec(self, sample: torch.Tensor, method: str = "geometric_median") -> None:
        if method == "zeros":
            return
        centre = sample.mean(0) if method == "mean" else geometric_median(sample)
        self.b_dec.copy_(centre)


@torch.no_grad()
def geometric_median(points: torch.Tensor, iters: int = 50, eps: float = 1e-5) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances (robust to outlier tokens)."""
    guess = points.mean(0)
    for _ in range(iters):
        weights = 1 / (points - guess).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - guess).norm() < eps * (1 + guess.norm()):
            return new
        guess = new
    return guess
