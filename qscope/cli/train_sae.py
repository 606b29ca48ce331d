"""`qscope train-sae CONFIG [--resume] [--json]`: train SAEs from a YAML config (see configs/train_default_sae.yaml)."""

from __future__ import annotations

from qscope.cli.common import add_json_arg, add_set_arg, config_overrides, emit_json


def register(sub) -> None:
    p = sub.add_parser("train-sae", help="train TopK / BatchTopK SAEs on LM activations (YAML config)")
    p.add_argument("config", help="YAML file mapping to qscope.training.TrainConfig")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt when it exists")
    p.add_argument("--out", default=None, help="override the config's run directory")
    p.add_argument("--max-tokens", type=int, default=None, help="override the config's training tokens")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_arg(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from qscope.training import TrainConfig, Trainer

    cfg = TrainConfig.from_yaml(args.config, config_overrides(args, {"out": "out", "max_tokens": "max_tokens"}))
    if args.no_progress or args.json:
        cfg.progress = False
    result = Trainer(cfg).fit(resume=args.resume)
    summary = result.summary()
    if args.json:
        emit_json(summary)
    else:
        print(f"trained {result.steps} steps ({result.tokens} tokens, {result.tokens_per_s:.0f} tok/s) → {result.out}")
        for layer, path in result.exported.items():
            m = result.heldout.get(layer, {})
            print(
                f"  layer {layer}: {path}  held-out EV {m.get('explained_variance')}  L0 {m.get('l0')}  "
                f"dead {m.get('dead_fraction')}"
            )
    return 0
