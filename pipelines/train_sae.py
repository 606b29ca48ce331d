"""Ray entrypoint for SAE training: the trainer runs inside one Ray task, on a GPU when the cluster has one.

    python -m qscope.pipelines.train_sae --config configs/train_default_sae.yaml [--resume] [--address ray://...]
    ray job submit -- python -m qscope.pipelines.train_sae --config ...

Training is one process (one optimiser step needs the whole batch), so Ray's role is placement: put the job on a
GPU node, next to the activation cache. On a CPU-only cluster the task asks for half a CPU, because an actor/task
asking for a whole CPU on a 2-core machine starves Ray Data's own workers (seen: the pipeline hangs forever).
"""

from __future__ import annotations

import sys


def train_resources(cluster_resources: dict) -> dict:
    """Ray resource request for the training task given `ray.cluster_resources()`."""
    from qscope.operators.base import Resources

    if cluster_resources.get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": Resources().num_cpus}  # the operators' fractional default: safe on 2-core machines


def _train(config: dict, resume: bool) -> dict:
    # Runs inside the Ray worker: import and build everything there (the driver needs neither torch nor data).
    from qscope.training import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(config)
    cfg.progress = False
    result = Trainer(cfg).fit(resume=resume)
    return result.summary()


def run(config: dict, resume: bool = False, address: str | None = None) -> dict:
    from qscope.pipelines.runtime import init_ray

    ray = init_ray(address)
    resources = train_resources(ray.cluster_resources())
    if resources.get("num_gpus"):
        config = {**config, "device": "cuda"}
    task = ray.remote(**resources)(_train)
    return ray.get(task.remote(config, resume))


def main(argv: list[str] | None = None) -> int:
    """Prints the result as one JSON document; exit statuses as `qscope`'s (`qscope.cli.run_command_line`)."""
    from qscope.cli import CommandParser, run_command_line
    from qscope.cli.common import add_json_arg, add_set_arg

    def make_parser() -> CommandParser:
        p = CommandParser(prog="python -m qscope.pipelines.train_sae", description=__doc__.splitlines()[0])
        p.add_argument("--config", required=True, help="YAML training config (qscope.training.TrainConfig)")
        p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
        p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local instance)")
        add_set_arg(p)
        add_json_arg(p)
        p.set_defaults(func=_main_run)
        return p

    return run_command_line(make_parser, argv)


def _main_run(args) -> int:
    from qscope.cli.common import emit_json
    from qscope.training import TrainConfig

    cfg = TrainConfig.from_yaml(args.config, args.set).validate()  # fail fast on the driver, before Ray starts
    emit_json(run(cfg.to_dict(), args.resume, args.address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
