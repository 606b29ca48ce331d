"""Pieces the pipelines share: the signature meta of a model spec, starting a run, CLI glue."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from qscope.errors import QscopeError
from qscope.signatures import SignatureMeta

log = logging.getLogger(__name__)


def signature_meta(model_cfg, sig_cfg) -> SignatureMeta:
    """What the encoders will write, known on the driver without loading the LM (only the SAE; the model by its
    provenance name: nothing is loaded, converted or downloaded on the driver)."""
    from qscope.models import model_name, resolve_sae_and_model

    chosen = resolve_sae_and_model(model_cfg.sae, model_cfg.model, model_cfg.layer, model_cfg.allow_model_mismatch)
    sae = chosen.sae
    return SignatureMeta(model_name(chosen.model), sae.sae_id, chosen.layer, sig_cfg.pooling, int(sig_cfg.top_n),
                         sae.d_sae, sae_hash=sae.weights_hash(), max_length=int(model_cfg.max_length))


def start_run(cfg, executor: str | None = None, address: str | None = None):
    """A `Run` of `cfg` on its executor (Ray is started, or joined, here)."""
    from qscope.pipelines.plan import Run
    from qscope.pipelines.progress import Progress

    executor = executor or cfg.executor
    if executor == "ray":
        from qscope.pipelines.runtime import init_ray

        init_ray(address)
    return Run(cfg, executor, progress=Progress(executor))


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="pipeline YAML (see configs/)")
    p.add_argument("--seeds", default=None, help="seed file (overrides the config)")
    p.add_argument("--corpus", default=None, help="corpus file / directory (overrides the config)")
    p.add_argument("--out", default=None, help="output directory (overrides the config)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else embedded Ray)")
    p.add_argument("--executor", choices=["ray", "local"], default=None, help="override the config's executor")
    p.add_argument("--plan", action="store_true", help="print the plan and exit without running")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true")


def plan_or_run(config_cls, build_plan, run, args):
    """`--plan`: print the plan and stop; else run it. The config comes from `--config`, with `--seeds/--corpus/
    --out/--executor` overriding its fields (the run function of the classify and mine entry points)."""
    cfg = config_cls.from_yaml(args.config)
    for k in ("seeds", "corpus", "out", "executor"):
        if getattr(args, k, None):
            setattr(cfg, k, getattr(args, k))
    plan = build_plan(cfg)
    if args.plan:
        print(plan.describe())
        return None
    return run(plan, address=args.address)


def module_main(prog: str, doc: str, run_fn, argv: list[str] | None, exit_code=None) -> int:
    """`python -m qscope.pipelines.X`: the shared flags (`add_common_args`), then `run_main(run_fn, args)`."""
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])
    add_common_args(p)
    return run_main(run_fn, p.parse_args(argv), exit_code)


def run_main(run_fn, args, exit_code=None) -> int:
    """Shared `python -m qscope.pipelines.X` wrapper: clear one-line errors, JSON (alone on stdout) or a summary."""
    from qscope.cli.common import emit_json, json_stdout

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    with json_stdout(args.json, restore=False):
        try:
            result = run_fn(args)
        except QscopeError as exc:
            if args.json:
                emit_json({"error": type(exc).__name__, "message": str(exc)})
            else:
                print(f"qscope: error: {exc}", file=sys.stderr)
            return 2
        if result is None:
            return 0
        if args.json:
            emit_json(result)
        else:
            for k, v in result.items():
                if k not in ("timings", "throughput"):
                    print(f"{k}: {v}")
        return exit_code(result) if exit_code else 0


def json_dump(path: Path, obj) -> Path:
    from qscope.paths import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
    return path
