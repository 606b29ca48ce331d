"""`qscope sweep "prompt" --feature ID`: on-target rate (by a judge) and fluency over a grid of steering strengths.

On-target is decided by a judge that is not the steered feature:
  --judge-examples FILE   texts of the concept (JSONL / CSV / text lines); negatives from --judge-negatives or the
                          background sample; the judge is the seed classifier on an unsteered re-encode of each
                          output with the steered feature removed (--judge-kind signature, default), or TF-IDF+LR /
                          a hidden-state probe trained on those texts (--judge-kind tfidf | hidden)
  --judge MODULE:FUNC     a user-given classifier: FUNC(list[str]) -> scores (>= 0.5 = on target) or bools
Without one the feature's own activation is used and the output says it is circular.
"""

from __future__ import annotations

import sys

from qscope.cli.common import add_json_arg, emit_json
from qscope.cli.steer import add_steering_args, build_engine


def register(sub) -> None:
    p = sub.add_parser("sweep", help="steering strength sweep: on-target rate (judged) vs fluency, best trade-off")
    p.add_argument("prompts", nargs="+", help="one or more prompts")
    add_steering_args(p)
    p.add_argument("--strengths", default="0,1,2,4,8,16", help="comma-separated grid (0 is always included)")
    p.add_argument("--op", default="activate", choices=["activate", "clamp"])
    p.add_argument(
        "--max-perplexity",
        type=float,
        default=None,
        help="fluency bound (default: --ppl-factor x the unsteered perplexity)",
    )
    p.add_argument("--ppl-factor", type=float, default=2.0)
    # feature_rate counts an output when the feature reaches this fraction of its typical max
    p.add_argument("--threshold", type=float, default=0.1, help="feature_rate: fraction of typical max")
    p.add_argument("--judge-examples", default=None, help="texts of the concept: train the on-target judge on them")
    p.add_argument(
        "--judge-negatives",
        default=None,
        help="texts not of the concept (default: the background sample, data/demo/corpus.jsonl, and the unsteered "
        "model's answers to 16 everyday prompts)",
    )
    p.add_argument(
        "--judge-kind",
        default="signature",
        choices=["signature", "tfidf", "hidden"],
        help="signature: seed classifier on an unsteered re-encode, steered feature removed (default)",
    )
    p.add_argument("--judge", default=None, metavar="MODULE:FUNC", help="a user-given classifier")
    p.add_argument("--temperature", type=float, default=0.0)
    add_json_arg(p)
    p.set_defaults(func=run)


SWEEP_OPTIONS = ("op", "positions", "max_new_tokens", "threshold", "max_perplexity", "ppl_factor", "temperature")
"""`strength_sweep` keyword arguments that the CLI takes as they are, under the same names."""


def build_judge(args, engine, layer):
    """The judge the CLI arguments ask for (None: none given)."""
    from qscope.errors import InputError

    if args.judge and args.judge_examples:
        raise InputError("give --judge or --judge-examples, not both")
    if args.judge:
        import importlib

        mod, _, fn = args.judge.partition(":")
        if not fn:
            raise InputError(f"--judge must be MODULE:FUNC, got {args.judge!r}")
        try:
            return getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"--judge {args.judge}: {exc}") from exc
    if not args.judge_examples:
        return None
    from qscope.analysis.background import background_texts
    from qscope.evaluation.judges import HiddenStateJudge, SignatureJudge, TfidfJudge, ordinary_answers
    from qscope.io import read_texts

    pos = read_texts(args.judge_examples)
    if args.judge_negatives:
        neg = read_texts(args.judge_negatives)
    else:  # a corpus alone does not look like chat: the model's own plain answers are negatives too
        neg = background_texts(max(200, 4 * len(pos)))
        neg += ordinary_answers(engine, args.max_new_tokens, chat=not args.no_chat)
    if len(pos) < 2 or len(neg) < 2:
        raise InputError("a judge needs at least 2 concept texts and 2 negatives")
    lm = getattr(engine, "lm", None)
    if args.judge_kind == "signature":
        if lm is None:
            from qscope.models import LanguageModel

            lm = LanguageModel.load(getattr(engine, "model_name", None))
        judge = SignatureJudge(lm, engine.saes[layer], layer)
    elif args.judge_kind == "tfidf":
        judge = TfidfJudge()
    else:
        judge = HiddenStateJudge(lm=lm)
    return judge.fit(pos + neg, [1] * len(pos) + [0] * len(neg), folds=0)


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
        judge = build_judge(args, engine, layer)
        result = strength_sweep(
            engine,
            args.prompts,
            args.feature[0],
            grid,
            layer=layer,
            lm=getattr(engine, "lm", None),
            chat=not args.no_chat,
            judge=judge,
            **{name: getattr(args, name) for name in SWEEP_OPTIONS},
        )
    finally:
        engine.close()
    if args.json:
        emit_json({"engine": args.engine, **result.to_dict()})
        return 0
    if judge is None:
        print(
            "note: no judge given (--judge-examples / --judge): on-target is the steered feature's own activation, "
            "which the steering raises (circular)",
            file=sys.stderr,
        )
    print(
        f"feature {result.feature} @ layer {result.layer} ({result.op}); on-target judged by {result.judge}; "
        f"perplexity bound {result.perplexity_bound:.2f}"
    )
    print(f"{'strength':>9} {'on-target':>9} {'feat-rate':>9} {'max act':>8} {'ppl':>8} {'distinct':>8} {'tokens':>7}")
    for r in result.rows:
        mark = "  <- best trade-off" if r["best"] else ("" if r["within_bound"] else "  (over bound)")
        print(
            f"{r['strength']:>9.2f} {r['on_target_rate']:>9.2f} {r['feature_rate']:>9.2f} "
            f"{r['mean_max_activation']:>8.3f} {r['perplexity']:>8.2f} {r['distinct_word_ratio']:>8.2f} "
            f"{r['mean_new_tokens']:>7.1f}{mark}"
        )
    print(f"best strength: {result.best_strength}")
    if result.judge_floor is not None and result.judge_floor >= 0.5:
        print(
            f"warning: the judge calls {result.judge_floor:.0%} of the unsteered outputs on target: its negatives do "
            "not look like this model's answers; give --judge-negatives with ordinary answers of the model",
            file=sys.stderr,
        )
    return 0
