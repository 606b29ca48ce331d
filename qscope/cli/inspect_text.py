"""`qscope inspect "text" --out FILE`: a prompt-centric HTML view of which features fire on which tokens."""

from __future__ import annotations

from qscope.cli.common import add_json_arg, add_model_args, emit_json, feature_explorer


def register(sub) -> None:
    p = sub.add_parser("inspect", help="HTML view of the features of one text, token by token")
    p.add_argument("text", help="the text to inspect")
    p.add_argument("--out", default=None, help="HTML file to write (default: print only)")
    p.add_argument("--top", type=int, default=20, help="features of the text to list")
    p.add_argument(
        "--background", default=None, help="corpus the labels are read from (default: data/demo/corpus.jsonl)"
    )
    p.add_argument("--n-background", type=int, default=200, help="background texts used for labels")
    p.add_argument("--no-labels", action="store_true", help="skip labels (no background pass)")
    add_model_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:

    explorer, lm, sae, layer = feature_explorer(args, background=args.background, n_background=args.n_background)
    d = explorer.inspect(args.text, out=args.out, top=args.top, label=not args.no_labels)
    summary = {
        "model": lm.name,
        "sae": sae.sae_id,
        "layer": layer,
        "out": args.out,
        "n_tokens": len(d["tokens"]),
        "features": d["features"],
    }
    if args.json:
        emit_json(summary)
    else:
        for f in d["features"]:
            print(f"{f['id']:>6}  max {f['value']:7.3f}  on {f['n_tokens']:3d} tokens  {f['label']}")
        if args.out:
            print(f"wrote {args.out}")
    return 0
