"""Starting a pipeline from a command line. `qscope run`, `qscope classify` and `python -m qscope.pipelines.X` all
come here: the config (its YAML, then the command's flags, then each `--set KEY=VALUE`), `--plan`, the run, its
summary (or `--json` document) and its exit status.

    python -m qscope.pipelines.expand --config configs/demo.yaml --set synthesis.n_samples=4
    qscope run configs/mine.yaml --set min_score=0.7 --json
    qscope classify --seeds s.jsonl --corpus c.jsonl --out labels.parquet --set resources.light.local_below=0

Errors become exit statuses in `qscope.cli.run_command_line`, the same function for every entry point.
"""

from __future__ import annotations

import importlib
import sys

from qscope.config import Override


def load_pipeline_config(kind: str | None, config: str | None, overrides: list[Override] = ()):
    """(kind, config): `config`'s YAML (kind None: its `pipeline:` key picks the pipeline), else the pipeline's
    defaults, with `overrides` applied before anything is checked."""
    from qscope.errors import InputError
    from qscope.pipelines.config import CONFIGS, load_config

    if kind is None:
        if config is None:
            raise InputError("no pipeline config given")
        return load_config(config, overrides)
    if config is None:
        return kind, CONFIGS[kind].from_dict({}, overrides=overrides)
    return kind, CONFIGS[kind].from_yaml(config, overrides)


def launch(
    kind: str | None,
    config: str | None,
    overrides: list[Override] = (),
    *,
    plan_only: bool = False,
    address: str | None = None,
    as_json: bool = False,
) -> int:
    """Build the pipeline's plan and print it (`plan_only`) or run it; print its summary, or its one JSON document
    (`as_json`); return the exit status (`exit_code(result)` of pipelines that have one, else 0)."""
    from qscope.cli.common import emit_json

    kind, cfg = load_pipeline_config(kind, config, overrides)
    module = importlib.import_module(f"qscope.pipelines.{kind}")
    plan = module.build_plan(cfg)
    if plan_only:
        if as_json:
            emit_json({"pipeline": kind, "stages": plan.names, "describe": plan.describe()})
        else:
            print(plan.describe())
        return 0
    result = module.run(plan, address=address)
    if as_json:
        emit_json(result)
    else:
        print_summary(kind, result)
    return module.exit_code(result) if hasattr(module, "exit_code") else 0


def launch_from_args(args, kind: str | None = None, arg_keys: dict[str, str] | None = None) -> int:
    """`launch` with what a parsed command line says (`qscope.cli.common.add_pipeline_args`)."""
    from qscope.cli.common import PIPELINE_ARG_KEYS, config_overrides

    overrides = config_overrides(args, arg_keys or PIPELINE_ARG_KEYS)
    return launch(kind, args.config, overrides, plan_only=args.plan, address=args.address, as_json=args.json)


def module_main(kind: str, argv: list[str] | None = None) -> int:
    """`python -m qscope.pipelines.<kind> --config YAML [flags]`: the flags of `qscope run`, the same exit statuses."""
    from qscope.cli import CommandParser, run_command_line
    from qscope.cli.common import add_pipeline_args

    def make_parser() -> CommandParser:
        doc = importlib.import_module(f"qscope.pipelines.{kind}").__doc__ or ""
        p = CommandParser(prog=f"python -m qscope.pipelines.{kind}", description=doc.split("\n")[0])
        p.add_argument("--config", required=True, help="pipeline YAML (see configs/)")
        add_pipeline_args(p)
        p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
        p.set_defaults(func=lambda args: launch_from_args(args, kind))
        return p

    return run_command_line(make_parser, argv)


def print_summary(kind: str, result: dict) -> None:
    """A few lines for a person: what was written where; set-aside rows and files on stderr."""
    if kind == "expand":
        print(f"wrote {result['rows']} samples to {result['parquet']}")
        if result.get("report"):
            print(f"review report: {result['report']}")
        print(f"counts: {result['counts']}  ({result['wall_s']} s)")
    elif kind == "mine":
        print(
            f"processed {len(result['processed'])} new/changed file(s), skipped {result['skipped']}; "
            f"{result['mined_total']} mined rows in {result['out']}"
        )
    else:
        classes = f" (classes: {', '.join(result['classes'])})" if result.get("classes") else ""
        print(f"wrote {result['rows']} scored rows to {result['parquet']}{classes}")
    if result.get("rejected"):
        where = "_rejected/"
        if kind == "classify":
            from qscope.pipelines.classify import run_dir

            where = f"{run_dir(result['parquet'])}/_rejected/"
        print(f"{result['rejected']} corpus row(s) set aside with their reason: see {where}", file=sys.stderr)
    quarantined = result.get("quarantined") or {}
    if not isinstance(quarantined, dict):  # classify lists the files, mine maps them to the reason
        quarantined = dict.fromkeys(quarantined, "could not be read")
    for key, why in quarantined.items():
        print(f"quarantined (left in place, skipped): {key}: {why}", file=sys.stderr)
