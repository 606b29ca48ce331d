"""`qscope steer "prompt" --feature ID --strength S`: generate with SAE features activated / suppressed / clamped."""

from __future__ import annotations

from qscope.cli.common import add_json_arg, add_model_args, emit_json


def register(sub) -> None:
    p = sub.add_parser("steer", help="generate with SAE features activated, suppressed or clamped")
    p.add_argument("prompts", nargs="+", help="one or more prompts")
    add_steering_args(p)
    p.add_argument(
        "--strength",
        type=float,
        default=2.0,
        help="activate: multiples of the feature's typical max activation; suppress: fraction removed "
        "(1 = all); clamp: target in units of the typical max (default 2)",
    )
    p.add_argument("--op", default="activate", choices=["activate", "suppress", "clamp"])
    p.add_argument(
        "--intervention", default=None, help="JSON or YAML file with a saved intervention (instead of --feature)"
    )
    p.add_argument("--baseline", action="store_true", help="also generate without steering, for comparison")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--seed", type=int, default=0)
    add_json_arg(p)
    p.set_defaults(func=run)


def add_steering_args(p) -> None:
    """Options shared by `steer` and `sweep`."""
    add_model_args(p)
    p.add_argument("--feature", type=int, action="append", default=None, help="SAE feature id (repeatable)")
    p.add_argument("--positions", default="all", choices=["all", "prompt", "generated"], help="where to steer")
    p.add_argument("--engine", default="hf", choices=["hf", "vllm"], help="generation engine (default hf)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--no-chat", action="store_true", help="use the prompt as raw text, not a chat user turn")


def build_engine(args):
    """(engine, layer) from CLI args; the SAE's layer is the steering layer unless --layer is given."""
    from qscope.cli.common import load_model_and_sae, sae_spec
    from qscope.generation import make_engine

    lm, sae, layer = load_model_and_sae(args)
    stats = {layer: _stats_source(sae_spec(args))}
    if args.engine == "vllm":
        return make_engine("vllm", lm=lm, saes={layer: sae}, feature_stats=stats), layer
    return make_engine("hf", lm=lm, saes={layer: sae}, feature_stats=stats), layer


def _stats_source(spec):
    """The SAE's feature statistics (saved next to it), or None to fall back (see qscope.steering.calibration)."""
    try:
        from qscope.evaluation import load_feature_stats

        return load_feature_stats(spec)
    except Exception:  # noqa: BLE001 - no statistics: calibration warns and measures instead
        return None


def read_intervention(path: str):
    from pathlib import Path

    from qscope.errors import InputError
    from qscope.steering import Intervention

    file = Path(path).expanduser()
    if not file.exists():
        raise InputError(f"intervention file {file} does not exist")
    text = file.read_text()
    return Intervention.from_json(text) if file.suffix == ".json" else Intervention.from_yaml(text)


def run(args) -> int:
    from qscope.errors import InputError
    from qscope.steering import Intervention

    if args.intervention is None and not args.feature:
        raise InputError("pass --feature ID (repeatable) or --intervention FILE")
    engine, layer = build_engine(args)
    try:
        if args.intervention is not None:
            iv = read_intervention(args.intervention)
        else:
            iv = Intervention()
            for f in args.feature:
                iv = getattr(iv, args.op)(f, args.strength, layer=layer, positions=args.positions)
        resolved = iv.validate(engine.saes)
        kw = dict(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed, chat=not args.no_chat
        )
        steered = engine.generate(args.prompts, intervention=resolved, **kw)
        baseline = engine.generate(args.prompts, **kw) if args.baseline else None
    finally:
        engine.close()
    result = {
        "engine": args.engine,
        "layer": layer,
        "intervention": resolved.to_dict(),
        "results": [
            {**r.to_dict(), **({"baseline": b.text} if baseline else {})} for r, b in zip(steered, baseline or steered)
        ],
    }
    if args.json:
        emit_json(result)
    else:
        for r in result["results"]:
            print(f"> {r['prompt']}")
            if "baseline" in r:
                print(f"[unsteered] {r['baseline']}")
                print(f"[steered]   {r['text']}")
            else:
                print(r["text"])
            print()
    return 0
