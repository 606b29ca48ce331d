"""`qscope sweep "prompt" --feature ID`: on-target rate and perplexity over a grid of steering strengths."""

from __future__ import annotations

from qscope.cli.common import add_json_arg, emit_json
from qscope.cli.steer import add_steering_args, build_engine


def register(sub) -> None:
    p = sub.add_parser("sweep", help="steering strength sweep: on-target rate vs perplexity, picks the best strength")
    p.add_argument("prompts", nargs="+", help="one or more prompts")
    add_steering_args(p)
    p.add_argument("--strengths", default="0,1,2,4,8,16", help="comma-separated grid (0 is always included)")
    p.add_argument("--op", default="activate", choices=["activate", "clamp"])
    p.add_argument("--max-perplexity", type=float, default=None,
                   help="fluency bound (default: --ppl-factor x the unsteered perplexity)")
    p.add_argument("--ppl-factor", type=float, default=2.0)
    p.add_argument("--threshold", type=float, default=0.1,
                   help="on-target if the feature reaches this fraction of its typical max in the output")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from qscope.errors import InputError
    from qscope.steering.sweep import strength_sweep

    if not args.feature or len(args.feature) != 1:
        raise InputError("sweep needs exactly one --feature ID")
    try:
        grid = [float(s) for s in args.strengths.split(",") if s.strip()]
    except ValueError as exc:
        raise InputError(f"--strengths must be comma-separated numbers, got {args.strengths!r}") from exc
    engine, layer = build_engine(args)
    try:
        result = strength_sweep(
            engine, args.prompts, args.feature[0], grid, layer=layer, op=args.op, positions=args.positions,
            max_new_tokens=args.max_new_tokens, threshold=args.threshold, max_perplexity=args.max_perplexity,
            ppl_factor=args.ppl_factor, lm=getattr(engine, "lm", None), chat=not args.no_chat,
        )
    finally:
        engine.close()
    if args.json:
        emit_json({"engine": args.engine, **result.to_dict()})
        return 0
    print(f"feature {result.feature} @ layer {result.layer} ({result.op}); "
          f"perplexity bound {result.perplexity_bound:.2f}")
    print(f"{'strength':>9} {'on-target':>9} {'max act':>8} {'ppl':>8} {'tokens':>7}")
    for r in result.rows:
        mark = "" if r["within_bound"] else "  (over bound)"
        print(f"{r['strength']:>9.2f} {r['on_target_rate']:>9.2f} {r['mean_max_activation']:>8.3f} "
              f"{r['perplexity']:>8.2f} {r['mean_new_tokens']:>7.1f}{mark}")
    print(f"best strength: {result.best_strength}")
    return 0
