"""`qscope features "text" ...`: top SAE features per document and per token."""

from __future__ import annotations

from qscope.cli.common import add_json_arg, add_model_args, emit_json, load_model_and_sae


def register(sub) -> None:
    p = sub.add_parser("features", help="top SAE features of texts, per document and per token")
    p.add_argument("texts", nargs="+", help="one or more texts")
    add_model_args(p)
    p.add_argument("--top", type=int, default=10, help="features to show per document / per token")
    p.add_argument("--pooling", default="max", choices=["max", "sum", "binary"], help="document pooling")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from qscope.features import FeatureExtractor

    lm, sae, layer = load_model_and_sae(args)
    extractor = FeatureExtractor.single(lm, sae, layer)
    docs = extractor.extract(args.texts)[extractor.layers[0]]
    result = {
        "model": lm.name,
        "sae": sae.sae_id,
        "layer": extractor.layers[0],
        "pooling": args.pooling,
        "documents": [_document_json(d, args.top, args.pooling) for d in docs],
    }
    if args.json:
        emit_json(result)
    else:
        _print_human(result)
    return 0


def _document_json(doc, top: int, pooling: str) -> dict:
    ids, values = doc.signature(pooling, top)
    return {
        "text": doc.text,
        "n_tokens": doc.n_tokens,
        "truncated": doc.truncated,
        "features": [{"id": int(i), "value": round(float(v), 4)} for i, v in zip(ids, values)],
        "tokens": [
            {
                "token": tok,
                "features": [{"id": int(i), "value": round(float(v), 4)} for i, v in zip(ti[:top], tv[:top])],
            }
            for tok, ti, tv in zip(doc.tokens, doc.token_indices, doc.token_values)
        ],
    }


def _print_human(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"model [bold]{result['model']}[/]  sae [bold]{result['sae']}[/]  layer {result['layer']}")
    for n, doc in enumerate(result["documents"]):
        note = " (truncated)" if doc["truncated"] else ""
        table = Table(title=f"document {n}: {doc['n_tokens']} tokens{note}", show_lines=False)
        table.add_column("feature", justify="right")
        table.add_column(f"{result['pooling']} activation", justify="right")
        for f in doc["features"]:
            table.add_row(str(f["id"]), f"{f['value']:.3f}")
        console.print(table)
        for tok in doc["tokens"]:
            shown = ", ".join(f"{f['id']}:{f['value']:.2f}" for f in tok["features"][:5])
            console.print(f"  {tok['token']!r:>16}  {shown}")
