"""`qscope classify --seeds SEEDS --corpus CORPUS --out OUT.parquet`: one score per corpus row (or one per class)."""

from __future__ import annotations

from qscope.cli.common import MODEL_ARG_KEYS, PIPELINE_ARG_KEYS, add_model_args, add_pipeline_args

ARG_KEYS = {**PIPELINE_ARG_KEYS, **MODEL_ARG_KEYS, "signatures": "corpus_signatures", "k": "k"}
"""This command's flags -> the classify config keys they set."""


def register(sub) -> None:
    p = sub.add_parser("classify", help="score / label a corpus from (labelled) seed examples")
    add_pipeline_args(
        p,
        inputs_required=True,
        out_help="result: X.parquet (one file) or a directory of parts; id, score | score_<class>..., "
        "predicted_label. The run's _SUCCESS, rejected rows, seed model and signature store "
        "go to X.qscope/ beside it",
    )
    p.add_argument(
        "--signatures",
        default=None,
        help="signature store to read and update (default: <out>.qscope/_signatures); a corpus is "
        "encoded once, later runs encode only new or changed files",
    )
    p.add_argument("--config", default=None, help="optional classify YAML (model, resources, ...)")
    add_model_args(p, max_length=None)
    p.add_argument("-k", type=int, default=None, help="nearest seeds that vote (default 5)")
    p.set_defaults(func=run)


def run(args) -> int:
    from qscope.pipelines.launch import launch_from_args

    return launch_from_args(args, "classify", ARG_KEYS)
