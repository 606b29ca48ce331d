"""`qscope discover`: which SAE features separate a concept's texts from the rest (with labels)."""

from __future__ import annotations

from qscope.cli.common import add_json_arg, add_model_args, emit_json, feature_explorer


def register(sub) -> None:
    p = sub.add_parser("discover", help="rank SAE features that separate positive texts from negatives/background")
    p.add_argument(
        "concept",
        nargs="?",
        default=None,
        help="concept phrase; without --pos the model writes examples of it (and of unrelated topics)",
    )
    p.add_argument("--pos", default=None, help="positive texts (.jsonl with 'text', .json, .parquet, or .txt lines)")
    p.add_argument("--neg", default=None, help="negative texts (default: a background sample)")
    p.add_argument("--background", default=None, help="background corpus (default: data/demo/corpus.jsonl)")
    p.add_argument("--n-background", type=int, default=200, help="background texts to sample")
    p.add_argument("--top", type=int, default=20, help="features to report")
    p.add_argument("--method", default="auroc", choices=["auroc", "mean_diff"], help="ranking key")
    p.add_argument("--no-labels", action="store_true", help="skip automatic labels")
    p.add_argument(
        "--localize",
        default=None,
        metavar="LAYERS",
        help="also scan these layers (comma-separated, or 'all') with a residual probe (+ the SAE's layer)",
    )
    add_model_args(p)
    add_json_arg(p)
    p.set_defaults(func=run, max_length=128)


def run(args) -> int:
    from qscope.analysis.background import read_texts
    from qscope.errors import InputError

    if args.pos is None and not args.concept:
        raise InputError("give --pos FILE or a concept phrase")
    positives = read_texts(args.pos) if args.pos else None  # bad files fail before the model loads
    negatives = read_texts(args.neg) if args.neg else None
    explorer, lm, sae, layer = feature_explorer(
        args, background=args.background, n_background=args.n_background, max_length=args.max_length
    )
    if args.pos:
        result = explorer.discover(positives, negatives, top=args.top, method=args.method, label=not args.no_labels)
        explorer.last_examples = (positives, list(negatives or []))
        source = {"positives": args.pos, "negatives": args.neg or "background"}
    else:
        explorer.discover_top_features(args.concept, negatives=negatives, top=args.top, method=args.method)
        result = explorer.last_discovery
        source = {
            "concept": args.concept,
            "positives": "model-written",
            "negatives": args.neg or "model-written (unrelated topics)",
        }
    out = {"model": lm.name, **result.to_dict(), **source}
    if args.concept and not args.pos:
        out["examples"] = explorer.last_examples[0]
    if args.localize:
        layers = None if args.localize == "all" else [int(x) for x in args.localize.split(",") if x.strip()]
        pos, neg = explorer.last_examples if not args.pos else (positives, negatives)
        out["localization"] = explorer.localize(pos, neg or None, layers=layers, max_length=args.max_length).to_dict()
    if args.json:
        emit_json(out)
    else:
        _print_human(out)
    return 0


def _print_human(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"model [bold]{out['model']}[/]  sae [bold]{out['sae']}[/]  layer {out['layer']}  "
        f"{out['n_pos']} positives vs {out['n_neg']} negatives ({out['negatives']})"
    )
    table = Table(show_lines=False)
    for col, just in (
        ("feature", "right"),
        ("AUROC", "right"),
        ("effect", "right"),
        ("fires pos", "right"),
        ("fires neg", "right"),
        ("label", "left"),
    ):
        table.add_column(col, justify=just)
    for f in out["features"]:
        table.add_row(
            str(f["feature"]),
            f"{f['auroc']:.3f}",
            f"{f['effect_size']:.2f}",
            f"{f['frac_pos']:.0%}",
            f"{f['frac_neg']:.0%}",
            f.get("label") or "",
        )
    console.print(table)
    loc = out.get("localization")
    if loc:
        t = Table(title=f"localization: best layer {loc['best_layer']}")
        for col in ("layer", "probe AUROC", "probe acc", "d'", "SAE held-out AUROC", "top SAE features"):
            t.add_column(col, justify="right")
        for r in loc["layers"]:
            sae_auc = "" if r["sae_heldout_auroc"] is None else f"{r['sae_heldout_auroc']:.3f}"
            t.add_row(
                str(r["layer"]),
                f"{r['probe_auroc']:.3f}",
                f"{r['probe_accuracy']:.2f}",
                f"{r['dprime']:.2f}",
                sae_auc,
                ", ".join(str(f["feature"]) for f in r["top_features"]),
            )
        console.print(t)
