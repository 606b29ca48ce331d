"""The training loop: one SAE per layer, Adam with warmup/decay, AuxK, dead-latent tracking, exact resume."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import NamedTuple

import torch

from qscope.paths import atomic_path
from qscope.training.config import TrainConfig, TrainConfigError
from qscope.training.optim import Adam
from qscope.training.sparse_sae import TrainableSAE

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


class StepMetrics(NamedTuple):
    """Metrics of one step for one layer (normalized space)."""

    loss: float
    explained_variance: float
    auxk_loss: float
    l0: float
    dead_fraction: float


class TrainResult(NamedTuple):
    """What a finished run produced."""

    out: Path
    steps: int
    tokens: int
    tokens_per_s: float  # SAE steps only (data loading included, LM streaming included when streaming)
    exported: dict[int, Path]
    heldout: dict[int, dict]  # layer -> HeldoutMetrics.as_dict()
    last: dict[int, StepMetrics]

    def summary(self) -> dict:
        """The JSON-able result `qscope train-sae --json` and the Ray train job report."""
        return {
            "out": str(self.out),
            "steps": self.steps,
            "tokens": self.tokens,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "exported": {str(k): str(v) for k, v in self.exported.items()},
            "heldout": {str(k): v for k, v in self.heldout.items()},
        }


class Trainer:
    """Trains `cfg.layers` SAEs on one activation source. `fit(resume=True)` continues from out/checkpoint.pt."""

    def __init__(self, cfg: TrainConfig, lm=None, source=None):
        self.cfg = cfg.validate()
        self.out = Path(cfg.out).expanduser()
        torch.set_num_threads(cfg.num_threads or os.cpu_count() or 1)
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        )
        self.lm = lm
        self.source = source or self._make_source()
        self.layers = sorted(cfg.layers)
        self.d_in = self.source.d_in
        s = cfg.sae
        g = torch.Generator().manual_seed(cfg.seed)
        self.saes = {
            layer: TrainableSAE(
                self.d_in, s.d_sae, s.k, s.architecture, s.k_aux, generator=g, init_encoder_norm=s.init_encoder_norm
            ).to(self.device)
            for layer in self.layers
        }
        self.optims = {
            layer: Adam(sae.parameters(), lr=s.resolved_lr(), betas=s.betas) for layer, sae in self.saes.items()
        }
        self.since_fired = {layer: torch.zeros(s.d_sae, dtype=torch.long, device=self.device) for layer in self.layers}
        self.scales: dict[int, float] = {}
        self.step = 0

    # --- data -----------------------------------------------------------------------------------------------
    def _make_source(self):
        from qscope.training.sources import CacheSource, StreamingSource

        cfg = self.cfg
        if cfg.cache:
            from qscope.training.cache import read_manifest

            for cache in cfg.cache_paths:
                have = read_manifest(cache)["layers"]
                missing = sorted(set(cfg.layers) - set(have))
                if missing:
                    raise TrainConfigError(f"cache {cache} holds layers {have}, not {missing}")
            return CacheSource(cfg.cache, cfg.layers, cfg.batch_size, cfg.seed)
        from qscope.training.text import read_texts

        lm = self._lm()
        return StreamingSource(
            lm,
            read_texts(cfg.corpus, cfg.split),
            cfg.layers,
            cfg.batch_size,
            cfg.seed,
            cfg.stream_window,
            cfg.max_length,
        )

    def _lm(self):
        if self.lm is None:
            from qscope.models import LanguageModel

            self.lm = LanguageModel.load(self.cfg.model)
        for layer in self.cfg.layers:
            if not 0 <= layer < self.lm.n_layers:
                raise TrainConfigError(
                    f"layer {layer} out of range: {self.lm.name} has layers 0..{self.lm.n_layers - 1}"
                )
        return self.lm

    def _init_from_sample(self) -> None:
        sample = self.source.sample(self.cfg.normalization_tokens, self.cfg.seed)
        for layer, sae in self.saes.items():
            x = sample[layer].to(self.device)
            # Dataset-wise scale so that E||x|| = sqrt(d_in): the lr and init then do not depend on the model's
            # residual norm (SmolLM2 layer 15 ≈ 180); folded into the weights at export.
            self.scales[layer] = float(self.d_in**0.5 / x.norm(dim=1).mean()) if self.cfg.sae.normalize else 1.0
            sae.init_b_dec(x * self.scales[layer], self.cfg.sae.init_b_dec)

    # --- schedule ---------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        s, total = self.cfg.sae, self.cfg.total_steps
        lr = s.resolved_lr()
        if step < s.warmup_steps:
            return lr * (step + 1) / s.warmup_steps
        decay_start = int(total * (1 - s.decay_fraction))
        if s.decay_fraction > 0 and step >= decay_start:
            return lr * max(total - step, 0) / max(total - decay_start, 1)
        return lr

    # --- one step -----------------------------------------------------------------------------------------------
    def train_step(self, batch: dict[int, torch.Tensor]) -> dict[int, StepMetrics]:
        s, metrics = self.cfg.sae, {}
        lr = self.lr_at(self.step)
        for layer, sae in self.saes.items():
            x = batch[layer].to(self.device, non_blocking=True) * self.scales[layer]
            dead = self.since_fired[layer] >= s.dead_tokens
            out = sae(x, dead if s.auxk_alpha > 0 else None)
            loss = out.fvu + s.auxk_alpha * out.auxk_loss
            opt = self.optims[layer]
            opt.lr = lr
            opt.zero_grad()
            loss.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            sae.set_decoder_norm_to_unit_norm()
            fired = torch.bincount(out.selection.cols, minlength=s.d_sae) > 0
            self.since_fired[layer] += len(x)
            self.since_fired[layer][fired] = 0
            metrics[layer] = StepMetrics(
                loss.item(),
                1 - out.fvu.item(),
                out.auxk_loss.item(),
                len(out.selection.cols) / len(x),
                float((self.since_fired[layer] >= s.dead_tokens).float().mean()),
            )
        self.step += 1
        return metrics

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "scales": {str(k): v for k, v in self.scales.items()},
            "saes": {str(k): v.state_dict() for k, v in self.saes.items()},
            "optims": {str(k): v.state_dict() for k, v in self.optims.items()},
            "since_fired": {str(k): v for k, v in self.since_fired.items()},
            "source": self.source.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def save_checkpoint(self) -> Path:
        path = self.out / CHECKPOINT
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return path

    def load_checkpoint(self, path: Path | None = None) -> None:
        path = path or self.out / CHECKPOINT
        state = torch.load(path, map_location="cpu", weights_only=True)
        _check_resumable(state["config"], self.cfg.to_dict(), path)
        self.step = int(state["step"])
        self.scales = {int(k): float(v) for k, v in state["scales"].items()}
        for k, sae in self.saes.items():
            sae.load_state_dict(state["saes"][str(k)])
            self.optims[k].load_state_dict(state["optims"][str(k)])
            self.since_fired[k] = state["since_fired"][str(k)].to(self.device)
        self.source.load_state_dict(state["source"])
        torch.set_rng_state(state["torch_rng"])

    # --- the loop ------------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False, export: bool = True, stop_at: int | None = None) -> TrainResult:
        """Train to `cfg.total_steps` (or pause after step `stop_at`: checkpoint written, nothing exported)."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and (self.out / CHECKPOINT).exists():
            self.load_checkpoint()
            log.info("resumed from %s at step %d", self.out / CHECKPOINT, self.step)
        else:
            self._init_from_sample()
        (self.out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.step, unit="step", desc="train-sae", dynamic_ncols=True)
        start_step, t0, last = self.step, time.time(), {}
        end = cfg.total_steps if stop_at is None else min(stop_at, cfg.total_steps)
        while self.step < end:
            last = self.train_step(self.source.next_batch())
            if bar is not None:
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.total_steps:
                    bar.set_postfix(_postfix(last))
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.total_steps:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        rate = (self.step - start_step) * cfg.batch_size / max(time.time() - t0, 1e-9)
        self.save_checkpoint()
        finished = self.step >= cfg.total_steps
        exported, heldout = self.export() if export and finished else ({}, {})
        result = TrainResult(self.out, self.step, self.step * cfg.batch_size, rate, exported, heldout, last)
        (self.out / "metrics.json").write_text(
            json.dumps(
                {
                    "steps": result.steps,
                    "tokens": result.tokens,
                    "tokens_per_s": round(rate, 1),
                    "heldout": {str(k): v for k, v in heldout.items()},
                    "last_step": {str(k): v._asdict() for k, v in last.items()},
                },
                indent=1,
            )
        )
        return result

    def export(self) -> tuple[dict[int, Path], dict[int, dict]]:
        from qscope.sae import SAEConfig
        from qscope.training.export import calibrate_threshold, export_sae, heldout_metrics, round_trip
        from qscope.training.heldout import heldout_activations

        cfg, s = self.cfg, self.cfg.sae
        held = heldout_activations(self)
        dtype = getattr(torch, cfg.export_dtype)
        paths, metrics = {}, {}
        model_name = self._model_name()
        for layer, trained in self.saes.items():
            trained = trained.cpu()  # export and metrics on CPU: small, and the saved SAE is a CPU module anyway
            acts = held[layer].cpu()
            # JumpReLU thresholds are calibrated on one half and measured on the other; TopK needs no calibration.
            calib, evaluation = (
                (acts[: len(acts) // 2], acts[len(acts) // 2 :]) if s.architecture == "batchtopk" else (None, acts)
            )
            arch = "topk" if s.architecture == "topk" else "jumprelu"
            sae_id = (cfg.sae_id or f"{model_name}-l{{layer}}").replace("{layer}", str(layer))
            meta = {
                "trained_by": "qscope.training",
                "training_architecture": s.architecture,
                "input_scale_folded": self.scales[layer],
                "training_tokens": self.step * cfg.batch_size,
                # distinct tokens behind those steps (the cache's size; None when streaming, which reads the
                # corpus window by window): the two differ when training cycles over a cache for several epochs
                "distinct_training_tokens": getattr(self.source, "n_tokens", None),
                "k": s.k,
                "lr": s.resolved_lr(),
                "batch_size": cfg.batch_size,
                "data": cfg.cache or cfg.corpus,
                "split": cfg.split,
            }
            sae_cfg = SAEConfig(
                arch,
                self.d_in,
                s.d_sae,
                s.k if arch == "topk" else None,
                True,
                model_name,
                layer,
                sae_id,
                metadata=meta,
            )
            threshold = None
            if arch == "jumprelu":
                plain = export_sae(trained, self.scales[layer], sae_cfg, threshold=0.0)
                threshold = calibrate_threshold(round_trip(plain, dtype), calib, s.k)
                meta["threshold"] = threshold
            sae = round_trip(export_sae(trained, self.scales[layer], sae_cfg, threshold), dtype)
            m = heldout_metrics(sae, evaluation)
            meta["heldout"] = m.as_dict()
            path = Path(cfg.export).expanduser() if cfg.export else self.out / f"layer{layer}"
            sae.save(path, dtype=dtype)
            paths[layer], metrics[layer] = path, m.as_dict()
        return paths, metrics

    def _model_name(self) -> str | None:
        if self.lm is not None:
            return self.lm.name
        manifest = getattr(getattr(self.source, "cache", None), "manifest", {})
        return manifest.get("model") or self.cfg.model


def _postfix(metrics: dict[int, StepMetrics]) -> dict:
    m = next(iter(metrics.values())) if len(metrics) == 1 else None
    if m is not None:
        return {
            "loss": f"{m.loss:.3f}",
            "ev": f"{m.explained_variance:.3f}",
            "l0": f"{m.l0:.1f}",
            "dead": f"{100 * m.dead_fraction:.1f}%",
        }
    return {f"ev{k}": f"{v.explained_variance:.3f}" for k, v in metrics.items()}


# Fields that may change between a checkpoint and its resumption without changing the math.
_RESUME_FREE = {
    "max_tokens",
    "progress",
    "checkpoint_every",
    "log_every",
    "export",
    "export_dtype",
    "out",
    "heldout_cache",
    "heldout_split",
    "heldout_tokens",
    "sae_id",
}


def _check_resumable(saved: dict, current: dict, path: Path) -> None:
    diff = sorted(k for k in set(saved) | set(current) if k not in _RESUME_FREE and saved.get(k) != current.get(k))
    if diff:
        raise TrainConfigError(f"cannot resume from {path}: config differs in {diff} (start a new `out` instead)")
