"""`qscope run CONFIG`: run a pipeline config (expand / mine / classify) on embedded Ray or a cluster."""

from __future__ import annotations

from qscope.cli.common import add_pipeline_args


def register(sub) -> None:
    p = sub.add_parser("run", help="run a pipeline config (expand, mine or classify; see configs/)")
    p.add_argument("config", help="pipeline YAML; its `pipeline:` key picks expand (default), mine or classify")
    add_pipeline_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from qscope.pipelines.launch import launch_from_args

    return launch_from_args(args)
