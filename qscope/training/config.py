"""Training configuration: dataclasses with a docstring under every field, loaded from YAML by `qscope.config`
(the loader of the pipeline configs: unknown keys, `Literal` choices and `--set`-style overrides alike)."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from qscope.config import ConfigBase
from qscope.errors import QscopeError

Architecture = Literal["topk", "batchtopk"]
ARCHITECTURES = typing.get_args(Architecture)


class TrainConfigError(QscopeError):
    """A training config is inconsistent (k > d_sae, unknown architecture, no data source, ...)."""


class _TrainingSection(ConfigBase):
    config_error: ClassVar[type[QscopeError]] = TrainConfigError


@dataclass
class SAETrainConfig(_TrainingSection):
    """Shape and optimisation of one SAE (the same for every trained layer)."""

    architecture: Architecture = "topk"
    """"topk" (k per token, exported as topk) or "batchtopk" (k·batch largest across the batch, exported as jumprelu
    with a threshold calibrated on held-out activations)."""
    d_sae: int = 8192
    """Number of latents."""
    k: int = 32
    """Active latents per token (batchtopk: on average)."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss (Gao et al. 2024): dead latents reconstruct the residual error."""
    k_aux: int | None = None
    """Dead latents used by AuxK per token; None = d_in // 2 (Gao et al.)."""
    dead_tokens: int = 1_000_000
    """A latent that has not fired for this many training tokens counts as dead (sparsify uses 10M; scaled to
    the few million tokens a CPU run sees)."""
    lr: float | None = None
    """Adam learning rate; None = 2e-4 / sqrt(d_sae / 16384), sparsify's scaling rule."""
    warmup_steps: int = 50
    """Linear warmup of the learning rate."""
    decay_fraction: float = 0.2
    """Final fraction of the steps over which the learning rate decays linearly to 0."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    normalize: bool = True
    """Scale inputs so that E||x|| = sqrt(d_in) during training (the scale is folded into the exported weights)."""
    init_b_dec: Literal["geometric_median", "mean", "zeros"] = "geometric_median"
    """b_dec starts at the centre of a sample of activations (or at zero)."""
    init_encoder_norm: float = 3**-0.5
    """W_enc starts as W_dec^T (unit-norm rows) times this: 1/sqrt(3) is the row norm of torch's default Linear
    init, sparsify's starting point. Measured (bench/sae_training.py, d_sae 8192, k 32, 1 thread): held-out EV
    0.350 vs 0.298 after 98k tokens and 0.391 vs 0.354 after 410k tokens, against 1.0."""

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(self.d_sae / 16384)

    def check(self) -> None:
        if self.d_sae <= 0 or self.k <= 0:
            raise TrainConfigError(f"d_sae and k must be positive (got d_sae={self.d_sae}, k={self.k})")
        if self.k > self.d_sae:
            raise TrainConfigError(
                f"k={self.k} exceeds d_sae={self.d_sae}: an SAE cannot activate more latents than it has"
            )
        if not self.init_encoder_norm > 0:
            raise self.invalid("init_encoder_norm", f"must be positive, got {self.init_encoder_norm}")


@dataclass
class TrainConfig(_TrainingSection):
    """A whole training run: data, SAE shape, schedule, checkpoints and export."""

    layers: list[int] = field(default_factory=lambda: [15])
    """Hook layers (residual stream after block L); one SAE each, all fed by one LM forward pass."""
    model: str | None = None
    """LM spec (embedded name, HF dir, GGUF, hub id); None = the embedded default. Needed when streaming."""
    corpus: str | None = None
    """Text corpus (.parquet / .jsonl with a `text` column) to stream activations from."""
    split: str | None = "train"
    """Corpus split to train on (rows whose `split` column equals it); None = all rows."""
    cache: str | list[str] | None = None
    """Activation cache directory (built by `cache_activations`), or a list of them read as one (caches filled in
    parallel over disjoint text ranges); used instead of streaming when set."""
    heldout_cache: str | None = None
    """Activation cache of held-out text for calibration (batchtopk) and final metrics."""
    heldout_split: str | None = "heldout"
    """Corpus split streamed for calibration / metrics when no heldout_cache is given."""
    heldout_tokens: int = 50_000
    """Held-out tokens used for calibration and the final metrics."""
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    """SAE architecture and optimiser settings."""
    batch_size: int = 4096
    """Tokens per optimiser step."""
    max_tokens: int = 2_000_000
    """Training tokens (epochs over a smaller cache are allowed: it cycles with a new permutation)."""
    max_length: int = 256
    """Tokens per text when streaming (longer texts are cut)."""
    stream_window: int = 512
    """Texts per streaming window: run through the LM together, then shuffled token-wise."""
    normalization_tokens: int = 16_384
    """Sample size for the normalization scale and the b_dec initialisation."""
    seed: int = 0
    """Seed of initialisation and data order."""
    device: str = "auto"
    """"cpu", "cuda", "cuda:1", ... or "auto" (CUDA when available). The LM (streaming) stays where it was loaded."""
    num_threads: int | None = None
    """torch intra-op threads; None = all cores (os.cpu_count())."""
    out: str = "runs/sae"
    """Run directory: checkpoint.pt, exported SAEs in layer{L}/, metrics.json."""
    checkpoint_every: int = 100
    """Steps between checkpoints (written atomically); 0 = only at the end."""
    log_every: int = 10
    """Steps between progress-bar / log updates of the metrics."""
    sae_id: str | None = None
    """Id recorded in the exported cfg.json; "{layer}" is replaced by the layer. None = "<model>-l{layer}"."""
    export: str | None = None
    """Export directory for a single-layer run (e.g. qscope/assets/saes/smollm2-135m-l15); None = out/layer{L}."""
    export_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    """dtype of the exported weights."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.sae, dict):  # TrainConfig(sae={...}) in Python, as the YAML writes it
            self.sae = SAETrainConfig.from_dict(self.sae, "sae")
        if isinstance(self.sae.betas, list):
            self.sae.betas = tuple(self.sae.betas)
        if isinstance(self.layers, int):
            self.layers = [self.layers]

    # --- validation (model-independent; layer range is checked once the LM is loaded) -------------
    def check(self) -> None:
        """The values alone (run at load); `validate` adds the data sources."""
        self.sae.check()
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise TrainConfigError(f"layers must be a non-empty list without repeats (got {self.layers})")
        if any((not isinstance(x, int)) or x < 0 for x in self.layers):
            raise TrainConfigError(f"layers must be non-negative integers (got {self.layers})")
        if self.batch_size <= 0 or self.max_tokens < self.batch_size:
            raise TrainConfigError(f"need 0 < batch_size <= max_tokens (got {self.batch_size}, {self.max_tokens})")
        if self.export is not None and len(self.layers) > 1:
            raise TrainConfigError("`export` names one directory: use it with a single layer (else out/layer{L})")

    def validate(self) -> TrainConfig:
        """`check()` and the data sources: a cache that exists, or a corpus file to stream from."""
        self.check()
        if self.cache is None and self.corpus is None:
            raise TrainConfigError("no training data: set `cache` (activation cache dir) or `corpus` (text file)")
        for cache in self.cache_paths:
            if not (Path(cache).expanduser() / "manifest.json").exists():
                raise TrainConfigError(
                    f"activation cache {cache} not found (no manifest.json); build it with "
                    "qscope.training.cache_activations or set `corpus` to stream instead"
                )
        if self.cache is None and not Path(self.corpus).expanduser().exists():
            raise TrainConfigError(f"corpus {self.corpus} not found (build it with scripts/build_sae_corpus.py)")
        return self

    @property
    def cache_paths(self) -> list[str]:
        """`cache` as a list (empty when streaming)."""
        if self.cache is None:
            return []
        return [self.cache] if isinstance(self.cache, str) else list(self.cache)

    @property
    def total_steps(self) -> int:
        return self.max_tokens // self.batch_size
