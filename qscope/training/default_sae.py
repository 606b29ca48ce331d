"""Build the shipped default SAE end to end: cache activations → train → export → README.

    python -m qscope.training.default_sae [--stages 300000,1000000,2000000] [--config configs/train_default_sae.yaml]

Every stage resumes: the caches continue after their last complete shard, training continues from its
checkpoint (`--resume` semantics), so the command can be killed and rerun at any point.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path

from qscope.paths import atomic_path

log = logging.getLogger("qscope.training.default_sae")
REPO = Path(__file__).resolve().parents[2]


def build(config: str | Path, stages: list[int], heldout_tokens: int, epochs: float = 2.0,
          resume: bool = True) -> list[dict]:
    """Grow the train cache to each of `stages` (tokens) in turn; after each, train and export an SAE.

    Why stages: on a shared 2-core CPU the LM forward is the bottleneck (~30-400 tok/s), so a 2M-token cache takes
    hours. Exporting after each stage ships a better SAE every time the data grows, instead of nothing until the end.
    Each stage trains from scratch for `epochs` passes over the cache (capped by the config's max_tokens).
    """
    from qscope.models import LanguageModel
    from qscope.training import TrainConfig, Trainer, cache_activations

    base = TrainConfig.from_yaml(config)
    lm = LanguageModel.load(base.model)
    held = cache_activations(base.heldout_cache, base.corpus, base.layers, split=base.heldout_split,
                             max_tokens=heldout_tokens, lm=lm, shard_texts=256, progress=False)
    log.info("held-out cache: %s", held)
    infos = []
    for target in sorted(stages):
        train = cache_activations(base.cache, base.corpus, base.layers, split=base.split, max_tokens=target,
                                  lm=lm, shard_texts=256, progress=False)
        log.info("train cache: %s", train)
        cfg = TrainConfig.from_dict(base.to_dict())
        cfg.max_tokens = min(base.max_tokens, int(epochs * train.n_tokens)) // cfg.batch_size * cfg.batch_size
        cfg.sae.dead_tokens = min(base.sae.dead_tokens, max(cfg.max_tokens // 5, cfg.batch_size))
        cfg.sae.warmup_steps = min(base.sae.warmup_steps, max(cfg.total_steps // 10, 1))
        cfg.heldout_tokens = min(cfg.heldout_tokens, held.n_tokens)
        cfg.out = str(Path(base.out).expanduser() / f"stage-{train.n_tokens}")
        cfg.progress = False
        result = Trainer(cfg).fit(resume=resume)
        info = {"train_cache_tokens": train.n_tokens, "train_texts": train.texts_done,
                "heldout_cache_tokens": held.n_tokens, "tokens_per_s": round(result.tokens_per_s, 1),
                "steps": result.steps, "tokens": result.tokens,
                "heldout": {str(k): v for k, v in result.heldout.items()}}
        for layer, path in result.exported.items():
            write_readme(path, cfg, info, result.heldout[layer])
        log.info("stage %d exported: %s", target, json.dumps(info))
        infos.append(info)
        if train.texts_done and train.n_tokens < target:  # the split is exhausted: later stages add nothing
            break
    return infos


def write_readme(directory: Path, cfg, info: dict, heldout: dict) -> Path:
    """The SAE's README.md: what it is, how it was trained, what it measured (the eval card is MODEL_CARD.md)."""
    s = cfg.sae
    arch = "TopK" if s.architecture == "topk" else "BatchTopK, exported as JumpReLU with a calibrated global threshold"
    text = f"""# qscope/smollm2-135m-l15 — the default SAE of the embedded model

A {arch} sparse autoencoder on the residual stream of **SmolLM2-135M-Instruct after block 15** (of 30;
`hook_layer: 15` = `hidden_states[16]`), trained by `qscope.training` and shipped in float16 (SAELens layout:
`cfg.json` + `sae_weights.safetensors`). Load it with `qscope.sae.load_sae("smollm2-135m-l15")` (the default).

## Why layer 15
The middle of the network: early layers mostly encode token identity and local syntax, the last layers are
specialised for predicting the next token; the middle residual stream holds the most abstract, reusable concepts
(topic, domain, language, sentiment), which is what qscope's classification, mining and steering act on. It is also
what Qwen-Scope-style SAEs target, and the truncated forward then runs only half of the model (~1.9x faster).

## Training
| | |
|---|---|
| data | `scripts/build_sae_corpus.py`: Debian package descriptions (all sections) + sae-probes task texts, train split |
| tokens | {info['tokens']:,} training tokens (steps × batch) drawn from {info['train_cache_tokens']:,} cached tokens of {info['train_texts']:,} texts |
| excluded | position 0 of every text (attention sink, ~100x norm), padding, and massive-activation outliers: tokens whose norm exceeds 10x the batch median (the sink spilling onto positions 1-2 in ~5% of texts, ~0.2% of tokens; one such row outweighs a whole batch in the MSE) |
| architecture | {s.architecture}, d_in 576, d_sae {s.d_sae}, k {s.k} |
| AuxK | α = {s.auxk_alpha:g}, k_aux = d_in/2, dead after {s.dead_tokens:,} tokens without firing |
| optimiser | Adam, lr {s.resolved_lr():g} (warmup {s.warmup_steps} steps, linear decay over the last {s.decay_fraction:.0%}), batch {cfg.batch_size} tokens |
| decoder | rows unit-norm during training, gradient parallel to the rows removed; b_dec initialised to the geometric median |
| normalization | inputs scaled so E‖x‖ = √576 during training; the scale is folded into W_enc / W_dec / b_dec (see cfg.json metadata `input_scale_folded`), so the SAE takes raw residuals |
| speed | {info['tokens_per_s']:,} tok/s of SAE training on this machine's 2 shared CPU cores |
| config | `configs/train_default_sae.yaml`; rebuild with `python -m qscope.training.default_sae` |

## Held-out quality (measured by the trainer)
{heldout['n_tokens']:,} tokens of the corpus' held-out split (not seen in training), float16 weights as shipped:

| explained variance | MSE | L0 | dead (never fires on these tokens) |
|---|---|---|---|
| {heldout['explained_variance']:.3f} | {heldout['mse']:.3f} | {heldout['l0']:.1f} | {100 * heldout['dead_fraction']:.1f}% |

CE-loss recovered, KL and Δ LM loss come from `qscope eval-sae smollm2-135m-l15` (see MODEL_CARD.md when present).
The SAE is not meant to reconstruct attention-sink rows (position 0, and the rare >10x-median-norm tokens at
positions 1-2); splice-in evaluations and feature reading should keep the original residual there.

_Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by qscope.training.default_sae._
"""
    path = Path(directory) / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qscope.training.default_sae", description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "train_default_sae.yaml"))
    p.add_argument("--stages", default="2000000",
                   help="comma-separated train-cache sizes (tokens); an SAE is trained and exported after each")
    p.add_argument("--heldout-tokens", type=int, default=50_000, help="tokens to cache from the held-out split")
    p.add_argument("--epochs", type=float, default=2.0, help="passes over the cache per stage (capped by max_tokens)")
    p.add_argument("--fresh", action="store_true", help="ignore existing training checkpoints")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stages = [int(x) for x in args.stages.split(",") if x]
    print(json.dumps(build(args.config, stages, args.heldout_tokens, args.epochs, not args.fresh)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
