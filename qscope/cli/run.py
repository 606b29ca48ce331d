"""`qscope run CONFIG`: run a pipeline config (expand / mine / classify) on embedded Ray or a cluster."""

from __future__ import annotations

import sys

from qscope.cli.common import add_json_arg, emit_json


def register(sub) -> None:
    p = sub.add_parser("run", help="run a pipeline config (expand, mine or classify; see configs/)")
    p.add_argument("config", help="pipeline YAML; its `pipeline:` key picks expand (default), mine or classify")
    p.add_argument("--seeds", default=None, help="seed file (overrides the config)")
    p.add_argument("--corpus", default=None, help="corpus file or directory (overrides the config)")
    p.add_argument("--out", default=None, help="output directory / file (overrides the config)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address; 'local' = a private Ray (default: $RAY_ADDRESS, else the cluster "
                        "running on this machine, else a private one)")
    p.add_argument("--executor", choices=["ray", "local"], default=None,
                   help="ray (default) or local (in-process, no Ray)")
    p.add_argument("--reencode", action="store_true",
                   help="rebuild a signature store made with other encoder settings instead of refusing it")
    p.add_argument("--plan", action="store_true", help="print the plan and exit")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import importlib

    from qscope.pipelines.config import load_config

    kind, cfg = load_config(args.config)
    for key in ("seeds", "corpus", "out", "executor", "reencode"):
        value = getattr(args, key, None)
        if value:
            setattr(cfg, key, value)
    module = importlib.import_module(f"qscope.pipelines.{kind}")
    plan = module.build_plan(cfg)
    if args.plan:
        if args.json:
            emit_json({"pipeline": kind, "stages": plan.names, "describe": plan.describe()})
        else:
            print(plan.describe())
        return 0
    result = module.run(plan, address=args.address)
    code = module.exit_code(result) if hasattr(module, "exit_code") else 0
    if args.json:
        emit_json(result)
        return code
    if kind == "expand":
        print(f"wrote {result['rows']} samples to {result['parquet']}")
        if result.get("report"):
            print(f"review report: {result['report']}")
        print(f"counts: {result['counts']}  ({result['wall_s']} s)")
    elif kind == "mine":
        print(f"processed {len(result['processed'])} new/changed file(s), skipped {result['skipped']}; "
              f"{result['mined_total']} mined rows in {result['out']}")
    else:
        print(f"wrote {result['rows']} scored rows to {result['parquet']}")
    if result.get("rejected"):
        print(f"{result['rejected']} corpus row(s) set aside with their reason: see _rejected/", file=sys.stderr)
    for key, why in (result.get("quarantined") or {}).items():
        print(f"quarantined (left in place, not mined): {key}: {why}", file=sys.stderr)
    return code
