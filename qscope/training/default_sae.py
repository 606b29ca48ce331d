"""Build a shipped SAE end to end: cache activations → train → export → README.

    python -m qscope.training.default_sae [--stages 300000,1000000,2000000] [--config configs/train_default_sae.yaml]
    python -m qscope.training.default_sae --config configs/train_qwen_sae.yaml --stages 1600000 --heldout-tokens 80000

The model-specific prose of each shipped SAE's README lives in `CARDS` (keyed by the config's model).

Every stage resumes: the caches continue after their last complete shard, training continues from its
checkpoint (`--resume` semantics), so the command can be killed and rerun at any point.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from qscope.paths import atomic_path

log = logging.getLogger("qscope.training.default_sae")
REPO = Path(__file__).resolve().parents[2]


def build(
    config: str | Path, stages: list[int], heldout_tokens: int, epochs: float = 2.0, resume: bool = True
) -> list[dict]:
    """Grow the train cache to each of `stages` (tokens) in turn; after each, train and export an SAE.

    Why stages: on a shared 2-core CPU the LM forward is the bottleneck (bench/README.md), so a 2M-token cache takes
    hours. Exporting after each stage ships a better SAE every time the data grows, instead of nothing until the end.
    Each stage trains from scratch for `epochs` passes over the cache (capped by the config's max_tokens).
    """
    from qscope.models import LanguageModel
    from qscope.training import TrainConfig, TrainConfigError, Trainer, cache_activations

    base = TrainConfig.from_yaml(config)
    if not isinstance(base.cache, str):
        raise TrainConfigError(
            f"{config}: `cache` is {base.cache!r}; the staged build grows one cache. With several caches filled in "
            "parallel, run `qscope train-sae CONFIG`, then `python -m qscope.training.default_sae --config CONFIG "
            "--readme-only`"
        )
    lm = LanguageModel.load(base.model)

    def cache(path, split: str, max_tokens: int):
        """Grow (or reuse) the activation cache at `path` to `max_tokens` tokens of the corpus split."""
        return cache_activations(
            path, base.corpus, base.layers, split=split, max_tokens=max_tokens, lm=lm, shard_texts=256, progress=False
        )

    held = cache(base.heldout_cache, base.heldout_split, heldout_tokens)
    log.info("held-out cache: %s", held)
    infos = []
    for target in sorted(stages):
        train = cache(base.cache, base.split, target)
        log.info("train cache: %s", train)
        cfg = TrainConfig.from_dict(base.to_dict())
        cfg.max_tokens = min(base.max_tokens, int(epochs * train.n_tokens)) // cfg.batch_size * cfg.batch_size
        cfg.sae.dead_tokens = min(base.sae.dead_tokens, max(cfg.max_tokens // 5, cfg.batch_size))
        cfg.sae.warmup_steps = min(base.sae.warmup_steps, max(cfg.total_steps // 10, 1))
        cfg.heldout_tokens = min(cfg.heldout_tokens, held.n_tokens)
        cfg.out = str(Path(base.out).expanduser() / f"stage-{train.n_tokens}")
        cfg.progress = False
        result = Trainer(cfg).fit(resume=resume)
        info = {
            "train_cache_tokens": train.n_tokens,
            "train_texts": train.texts_done,
            "heldout_cache_tokens": held.n_tokens,
            "tokens_per_s": round(result.tokens_per_s, 1),
            "steps": result.steps,
            "tokens": result.tokens,
            "heldout": {str(k): v for k, v in result.heldout.items()},
        }
        for layer, path in result.exported.items():
            write_readme(path, cfg, info, result.heldout[layer], model=lm.name, d_in=lm.d_model, n_layers=lm.n_layers)
        log.info("stage %d exported: %s", target, json.dumps(info))
        infos.append(info)
        if train.texts_done and train.n_tokens < target:  # the split is exhausted: later stages add nothing
            break
    return infos


def readme_for_run(config: str | Path) -> Path:
    """Write the README of an SAE trained by `qscope train-sae CONFIG` (finished run: out/metrics.json), from the
    run's metrics and its caches' manifests; nothing is trained or loaded besides the model's config."""
    from qscope.models import resolve_model_dir
    from qscope.training import TrainConfig, TrainConfigError
    from qscope.training.cache import read_manifest

    cfg = TrainConfig.from_yaml(config)
    metrics_file = Path(cfg.out).expanduser() / "metrics.json"
    if not metrics_file.exists() or not cfg.export or len(cfg.layers) != 1:
        raise TrainConfigError(f"{config}: needs a finished single-layer run with `export` ({metrics_file} missing?)")
    metrics = json.loads(metrics_file.read_text())
    heldout = metrics["heldout"].get(str(cfg.layers[0]))
    if not heldout:
        raise TrainConfigError(f"{metrics_file}: the run has not exported (no held-out metrics)")
    manifests = [read_manifest(c) for c in cfg.cache_paths]
    info = {
        "train_cache_tokens": sum(m["n_tokens"] for m in manifests),
        "train_texts": sum(m["texts_done"] for m in manifests),
        "tokens_per_s": metrics["tokens_per_s"],
        "steps": metrics["steps"],
        "tokens": metrics["tokens"],
    }
    directory, _ = resolve_model_dir(cfg.model)
    model_cfg = json.loads((Path(directory) / "config.json").read_text())
    return write_readme(
        Path(cfg.export).expanduser(),
        cfg,
        info,
        heldout,
        model=cfg.model,
        d_in=int(model_cfg["hidden_size"]),
        n_layers=int(model_cfg["num_hidden_layers"]),
    )


@dataclass(frozen=True)
class ShippedSAECard:
    """The model-specific prose of a shipped SAE's README (numbers come from the run itself)."""

    title: str
    """Heading after the SAE id, e.g. "the default SAE of the embedded model"."""
    model: str
    """Readable model name."""
    data: str
    """Where the training text comes from (scripts and sources)."""
    why_layer: str
    """Why this hook layer."""
    config: str
    """The committed training config."""


CARDS = {
    "smollm2-135m": ShippedSAECard(
        title="the default SAE of the embedded model",
        model="SmolLM2-135M-Instruct",
        data="`scripts/build_sae_corpus.py`: Debian package descriptions (all sections) + sae-probes task texts, "
        "train split",
        why_layer="The middle of the network: early layers mostly encode token identity and local syntax, the last "
        "layers are\nspecialised for predicting the next token; the middle residual stream holds the most "
        "abstract, reusable concepts\n(topic, domain, language, sentiment), which is what qscope's "
        "classification, mining and steering act on. It is also\nwhat Qwen-Scope-style SAEs target, and the "
        "truncated forward then runs only half of the model (~1.9x faster).",
        config="configs/train_default_sae.yaml",
    ),
    "qwen2.5-coder-0.5b": ShippedSAECard(
        title="the SAE of the second embedded model (`make qwen`)",
        model="Qwen2.5-Coder-0.5B-Instruct (AWQ, from GGUF)",
        data="`scripts/build_qwen_sae_corpus.py`: a 7M-character sample of the default SAE's corpus (English Debian "
        "package descriptions + sae-probes texts, incl. Python / C / HTML code), every Chinese Debian package "
        "description (`Translation-zh_CN` / `zh_TW`), and 0.7M characters of Python standard-library source; "
        "train split",
        why_layer="The middle of the network (block 12 of 24), for the same reason as the default SAE's layer 15 of "
        "30: the\nmiddle residual stream holds the abstract, reusable concepts (topic, language, code vs "
        "prose) that classification,\nmining and steering act on, and the truncated forward runs only half "
        "of the model.",
        config="configs/train_qwen_sae.yaml",
    ),
}


def write_readme(
    directory: Path,
    cfg,
    info: dict,
    heldout: dict,
    model: str | None = None,
    d_in: int | None = None,
    n_layers: int | None = None,
) -> Path:
    """The SAE's README.md: what it is, how it was trained, what it measured (the eval card is MODEL_CARD.md)."""
    s = cfg.sae
    model = model or cfg.model or "smollm2-135m"
    if model not in CARDS:
        raise ValueError(f"no README card for model {model!r}; known: {sorted(CARDS)}")
    card = CARDS[model]
    layer = cfg.layers[0]
    sae_name = (cfg.sae_id or f"{model}-l{layer}").replace("{layer}", str(layer))
    short_id = Path(cfg.export).name if cfg.export else sae_name.rsplit("/", 1)[-1]
    d_in = d_in or info.get("d_in") or 576
    of_layers = f" (of {n_layers}" if n_layers else " ("
    # The staged build grows one cache; a run over several caches (filled in parallel) is `qscope train-sae`.
    rebuild = (
        f"`python -m qscope.training.default_sae --config {card.config}`"
        if isinstance(cfg.cache, str)
        else f"`qscope train-sae {card.config}` after filling the caches its header lists"
    )
    arch = "TopK" if s.architecture == "topk" else "BatchTopK, exported as JumpReLU with a calibrated global threshold"
    text = f"""# {sae_name} — {card.title}

A {arch} sparse autoencoder on the residual stream of **{card.model} after block {layer}**{of_layers};
`hook_layer: {layer}` = `hidden_states[{layer + 1}]`), trained by `qscope.training` and shipped in {cfg.export_dtype} (SAELens layout:
`cfg.json` + `sae_weights.safetensors`). Load it with `qscope.sae.load_sae("{short_id}")`.

## Why layer {layer}
{card.why_layer}

## Training
| | |
|---|---|
| data | {card.data} |
| tokens | {info["tokens"]:,} training tokens (steps × batch) drawn from {info["train_cache_tokens"]:,} cached tokens of {info["train_texts"]:,} texts |
| excluded | position 0 of every text (the prepended BOS), padding, and massive-activation outliers: tokens whose norm exceeds 10x the batch median (attention-sink tokens; one such row outweighs a whole batch in the MSE) |
| architecture | {s.architecture}, d_in {d_in}, d_sae {s.d_sae}, k {s.k} |
| AuxK | α = {s.auxk_alpha:g}, k_aux = d_in/2, dead after {s.dead_tokens:,} tokens without firing |
| optimiser | Adam, lr {s.resolved_lr():g} (warmup {s.warmup_steps} steps, linear decay over the last {s.decay_fraction:.0%}), batch {cfg.batch_size} tokens |
| decoder | rows unit-norm during training, gradient parallel to the rows removed; b_dec initialised to the {s.init_b_dec.replace("_", " ")} |
| normalization | inputs scaled so E‖x‖ = √{d_in} during training; the scale is folded into W_enc / W_dec / b_dec (see cfg.json metadata `input_scale_folded`), so the SAE takes raw residuals |
| speed | {info["tokens_per_s"]:,} tok/s of SAE training on this machine's 2 shared CPU cores |
| config | `{card.config}`; rebuild with {rebuild} |

## Held-out quality (measured by the trainer)
{heldout["n_tokens"]:,} tokens of the corpus' held-out split (not seen in training), {cfg.export_dtype} weights as shipped:

| explained variance | MSE | L0 | dead (never fires on these tokens) |
|---|---|---|---|
| {heldout["explained_variance"]:.3f} | {heldout["mse"]:.3f} | {heldout["l0"]:.1f} | {100 * heldout["dead_fraction"]:.1f}% |

CE-loss recovered, KL and Δ LM loss come from `qscope eval-sae {short_id}` (see MODEL_CARD.md when present).
The SAE is not meant to reconstruct attention-sink rows (position 0, and the rare >10x-median-norm tokens);
splice-in evaluations and feature reading keep the original residual there.

_Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by qscope.training.default_sae._
"""  # noqa: E501 - Markdown: a table row must stay on one line
    path = Path(directory) / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qscope.training.default_sae", description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "train_default_sae.yaml"))
    p.add_argument(
        "--stages",
        default="2000000",
        help="comma-separated train-cache sizes (tokens); an SAE is trained and exported after each",
    )
    p.add_argument("--heldout-tokens", type=int, default=50_000, help="tokens to cache from the held-out split")
    p.add_argument("--epochs", type=float, default=2.0, help="passes over the cache per stage (capped by max_tokens)")
    p.add_argument("--fresh", action="store_true", help="ignore existing training checkpoints")
    p.add_argument(
        "--readme-only",
        action="store_true",
        help="only write the README of the config's finished `qscope train-sae` run",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.readme_only:
        print(readme_for_run(args.config))
        return 0
    stages = [int(x) for x in args.stages.split(",") if x]
    print(json.dumps(build(args.config, stages, args.heldout_tokens, args.epochs, not args.fresh)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
