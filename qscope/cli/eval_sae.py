"""`qscope eval-sae SAE`: evaluate an SAE on held-out text; optionally write its model card and feature stats."""

from __future__ import annotations

import sys

from qscope.cli.common import add_json_arg, add_model_mismatch_arg, emit_json


def register(sub) -> None:
    p = sub.add_parser(
        "eval-sae",
        help="explained variance, L0, dead latents, CE-loss recovered, KL of an SAE; model card and feature stats",
    )
    p.add_argument(
        "sae",
        nargs="?",
        default=None,
        help="shipped SAE id, directory or file (default: the shipped SAE of --model, else the default)",
    )
    p.add_argument("--tokens", type=int, default=16384, help="evaluation tokens (default 16384)")
    p.add_argument(
        "--texts",
        default=None,
        help="evaluation texts: .jsonl ('text' field), .parquet ('text' column; split=heldout rows if present) or "
        ".txt (blank-line separated); default: the SAE's own heldout_texts.jsonl when its directory has one "
        "(the Qwen SAE), else the held-out set shipped with qscope (~65k tokens of Debian "
        "package descriptions the shipped SAE never saw; the whole held-out split: "
        "--texts ~/.cache/qscope/corpora/sae_corpus.parquet after scripts/build_sae_corpus.py)",
    )
    p.add_argument("--layer", type=int, default=None, help="hook layer (default: the SAE's own)")
    p.add_argument("--model", default=None, help="model (default: the SAE's recorded model; hub ids take @revision)")
    add_model_mismatch_arg(p)
    p.add_argument("--max-length", type=int, default=512, help="truncate texts to this many tokens")
    p.add_argument("--batch-tokens", type=int, default=4096, help="padded tokens per forward batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the text shuffle that picks the evaluation texts")
    p.add_argument("--write-card", action="store_true", help="write MODEL_CARD.md next to the SAE weights")
    p.add_argument(
        "--write-stats", action="store_true", help="compute feature statistics, write feature_stats.safetensors"
    )
    p.add_argument("--stats-tokens", type=int, default=100_000, help="tokens for feature statistics (default 100000)")
    p.add_argument("--top-examples", type=int, default=0, help="keep the k top-activating token ids per feature")
    p.add_argument(
        "--stats-cache",
        default=None,
        help="compute the feature statistics from this activation cache (e.g. the held-out cache the SAE "
        "was trained with) instead of running the LM over --texts: seconds instead of minutes on a CPU",
    )
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from qscope.evaluation import (
        compute_feature_stats,
        evaluate_sae,
        feature_stats_from_cache,
        load_texts,
        sae_directory,
        write_feature_stats,
        write_model_card,
    )
    from qscope.evaluation.feature_stats import FEATURE_STATS_FILE, FeatureStats
    from qscope.models import LanguageModel, check_sae_fits, resolve_sae_and_model

    chosen = resolve_sae_and_model(args.sae, args.model, args.layer, args.allow_model_mismatch)
    spec, sae = chosen.sae_spec, chosen.sae
    # Resolve where the card/stats go before spending minutes on evaluation.
    out_dir = sae_directory(spec) if (args.write_card or args.write_stats) else None
    if args.stats_cache:  # checked before minutes of evaluation
        from qscope.errors import InputError
        from qscope.training.cache import read_manifest

        read_manifest(args.stats_cache)
        if not args.write_stats or args.top_examples:
            raise InputError(
                "--stats-cache goes with --write-stats and without --top-examples (a cache keeps no token ids)"
            )
    texts = load_texts(args.texts, sae_dir=_local_dir(spec))
    lm = LanguageModel.load(chosen.model, max_length=args.max_length)
    check_sae_fits(lm, sae)
    progress = sys.stderr.isatty() or bool(getattr(args, "verbose", False))
    common = {"batch_tokens": args.batch_tokens, "max_length": args.max_length, "seed": args.seed, "progress": progress}
    result = evaluate_sae(lm, sae, texts, layer=args.layer, n_tokens=args.tokens, **common)
    out = result.to_json()
    stats = None
    if args.write_stats and args.stats_cache:
        stats = feature_stats_from_cache(sae, args.stats_cache, layer=result.layer, n_tokens=args.stats_tokens)
        out["feature_stats"] = str(write_feature_stats(stats, out_dir))
    elif args.write_stats:
        stats = compute_feature_stats(
            lm, sae, texts, layer=result.layer, n_tokens=args.stats_tokens, top_k=args.top_examples, **common
        )
        out["feature_stats"] = str(write_feature_stats(stats, out_dir))
    elif args.write_card and (out_dir / FEATURE_STATS_FILE).exists():
        stats = FeatureStats.load(out_dir / FEATURE_STATS_FILE)
    if args.write_card:
        out["model_card"] = str(write_model_card(result, sae, out_dir, feature_stats=stats))
    if args.json:
        emit_json(out)
    else:
        _print_human(out)
    return 0


def _local_dir(spec):
    """The SAE's directory when it has one here (its own held-out set may live there); None for hub ids."""
    from qscope.errors import SAELoadError
    from qscope.evaluation import sae_directory

    try:
        return sae_directory(spec)
    except SAELoadError:
        return None


def _print_human(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from qscope.evaluation.metrics import METRIC_KEYS

    console = Console()
    table = Table(title=f"SAE {out['sae']} @ layer {out['layer']} — {out['n_tokens']:,} tokens of {out['text_source']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in METRIC_KEYS:
        value = out[key]
        table.add_row(key, "n/a" if value is None else f"{value:.4f}")
    console.print(table)
    for key in ("feature_stats", "model_card"):
        if key in out:
            console.print(f"wrote {out[key]}")
