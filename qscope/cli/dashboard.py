"""`qscope dashboard --features 1,2,3 --out DIR`: static HTML pages (+ Neuronpedia JSON) per feature."""

from __future__ import annotations

from qscope.cli.common import add_json_arg, add_model_args, emit_json, feature_explorer


def _feature_list(s: str) -> list[int]:
    import argparse

    try:
        feats = [int(x) for x in s.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--features takes comma-separated ids, got {s!r}") from exc
    if not feats:
        raise argparse.ArgumentTypeError("--features is empty")
    return feats


def register(sub) -> None:
    p = sub.add_parser("dashboard", help="write HTML dashboards and Neuronpedia JSON for features")
    p.add_argument("--features", type=_feature_list, required=True, help="comma-separated feature ids")
    p.add_argument("--out", required=True, help="output directory (index.html, feature-<id>.html, neuronpedia/)")
    p.add_argument("--texts", default=None, help="texts to read contexts from (default: a background sample)")
    p.add_argument("--n-background", type=int, default=200, help="background texts to sample when no --texts")
    p.add_argument("--lm-label", action="store_true", help="also ask the LM for a label (slow, small models are weak)")
    p.add_argument("--sweep", default=None, help="a steering sweep table (.json list of rows / .parquet) to render")
    add_model_args(p)
    add_json_arg(p)
    p.set_defaults(func=run, max_length=128)


def run(args) -> int:
    from pathlib import Path

    from qscope.analysis.background import read_texts

    texts = read_texts(args.texts) if args.texts else None  # bad files fail before the model loads
    explorer, lm, sae, layer = feature_explorer(args, n_background=args.n_background, max_length=args.max_length)
    for f in args.features:
        if not 0 <= f < sae.d_sae:
            from qscope.errors import InputError

            raise InputError(f"feature {f} out of range: {sae.sae_id} has features 0..{sae.d_sae - 1}")
    result = explorer.dashboard(args.features, args.out, texts=texts, lm_label=args.lm_label)
    if args.sweep:
        from qscope.analysis.sweep_view import write_sweep

        result["files"].append(str(write_sweep(_read_table(args.sweep), Path(args.out) / "sweep.html")))
    summary = {
        "out": result["out"],
        "files": result["files"],
        "features": [
            {
                "feature": d["feature"],
                "label": d["label"],
                "density": d["density"],
                "max_activation": d["max_activation"],
                "n_top": len(d["top"]),
            }
            for d in result["features"]
        ],
    }
    if args.json:
        emit_json(summary)
    else:
        for d in summary["features"]:
            print(f"feature {d['feature']}: {d['label']}  (density {d['density']:.3%}, max {d['max_activation']:.3g})")
        print(f"wrote {len(summary['files'])} files; open {Path(args.out) / 'index.html'}")
    return 0


def _read_table(path: str):
    import json

    if path.endswith(".parquet"):
        import polars as pl

        return pl.read_parquet(path)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data.get("rows", data) if isinstance(data, dict) else data
