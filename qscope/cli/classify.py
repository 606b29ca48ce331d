"""`qscope classify --seeds SEEDS --corpus CORPUS --out OUT.parquet`: one score per corpus row (or one per class)."""

from __future__ import annotations

from qscope.cli.common import add_json_arg, emit_json


def register(sub) -> None:
    p = sub.add_parser("classify", help="score / label a corpus from (labelled) seed examples")
    p.add_argument("--seeds", required=True, help="seed rows: text, optional label (JSONL / CSV / Parquet)")
    p.add_argument("--corpus", required=True, help="corpus rows: id, text (file or directory)")
    p.add_argument("--out", required=True,
                   help="result: X.parquet (one file) or a directory of parts; id, score | score_<class>..., "
                        "predicted_label. The run's _SUCCESS, rejected rows, seed model and signature store go "
                        "to X.qscope/ beside it")
    p.add_argument("--signatures", default=None,
                   help="signature store to read and update (default: <out>.qscope/_signatures); a corpus is "
                        "encoded once, later runs encode only new or changed files")
    p.add_argument("--reencode", action="store_true",
                   help="rebuild a signature store made with other encoder settings instead of refusing it")
    p.add_argument("--config", default=None, help="optional classify YAML (model, resources, ...)")
    p.add_argument("--model", default=None, help="model (default: the SAE's own)")
    p.add_argument("--sae", default=None, help="SAE (default: the shipped smollm2-135m-l15)")
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None, help="tokens read per text")
    p.add_argument("-k", type=int, default=None, help="nearest seeds that vote (default 5)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address; 'local' = a private Ray (default: $RAY_ADDRESS, else the cluster "
                        "running on this machine, else a private one)")
    p.add_argument("--executor", choices=["ray", "local"], default=None)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from qscope.pipelines import classify as pipeline
    from qscope.pipelines.config import ClassifyConfig

    cfg = ClassifyConfig.from_yaml(args.config) if args.config else ClassifyConfig()
    cfg.seeds, cfg.corpus, cfg.out = args.seeds, args.corpus, args.out
    for key, attr in (("model", "model"), ("sae", "sae"), ("layer", "layer"), ("max_length", "max_length")):
        if getattr(args, key) is not None:
            setattr(cfg.model, attr, getattr(args, key))
    if args.k is not None:
        cfg.k = args.k
    if args.executor:
        cfg.executor = args.executor
    if args.signatures:
        cfg.corpus_signatures = args.signatures
    if args.reencode:
        cfg.reencode = True
    result = pipeline.run(pipeline.build_plan(cfg), address=args.address)
    if args.json:
        emit_json(result)
    else:
        classes = f" (classes: {', '.join(result['classes'])})" if result.get("classes") else ""
        print(f"wrote {result['rows']} scored rows to {result['parquet']}{classes}")
        if result.get("rejected"):
            import sys

            print(f"{result['rejected']} corpus row(s) set aside with their reason in "
                  f"{result['parquet']}.qscope/_rejected/", file=sys.stderr)
    return 0
