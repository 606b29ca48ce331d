"""`classify`: label a corpus from labelled seeds — one `score` per row (one class), or `score_<class>` per class.

    qscope classify --seeds data/demo/classify_seeds.jsonl --corpus data/demo/corpus.jsonl --out labels.parquet
    python -m qscope.pipelines.classify --config configs/classify.yaml

Seeds: rows with `text` and optional `label` (no label / one label → a single `score`; with the default "probe",
the probability of belonging with the seeds against a corpus sample). The corpus streams through Ray Data: it is
encoded once into a signature store (`<out>/_signatures`, reused by later runs), then classified from it.

Output: `<out>` is the result and nothing else — one Parquet file when `out` ends in `.parquet` (the parts are
streamed into it), else a directory of Parquet parts; read it with `pl.read_parquet(out)` /
`pyarrow.dataset.dataset(out)`. Columns: id, score or score_<class>..., predicted_label (several classes),
n_tokens, truncated; schema metadata records model / SAE / layer / run id. Beside it, `<out>.qscope/` holds the
run's `_SUCCESS` (written last, with the run id), `_lock`, `_rejected/`, `_seed_model/` and the signature store
`_signatures/`. Row order follows the corpus in-process; on Ray it is not guaranteed: join on `id`.

The default "probe" reads three views of each row: its SAE signature, its mean hidden state and its text (word /
bigram TF-IDF, IDF from the background sample and the seeds): one regression over signature + hidden state and a
TF-IDF one over the text, mixed by each one's cross-validated AUROC on the seeds
(`qscope.seed_model.fit_seed_classifier`; measured in bench/README.md, "Issue 14, item 5").
"""

from __future__ import annotations

import sys
from pathlib import Path

from qscope.errors import InputError
from qscope.operators import Classify, Project
from qscope.pipelines import stages as shared
from qscope.pipelines.config import ClassifyConfig
from qscope.pipelines.flow import Flow, Ref, Step
from qscope.pipelines.outputs import mark_success, merge_parts, publish_parts, staging_dir
from qscope.pipelines.plan import Plan, Run, Stage
from qscope.seed_model import probe_views

SIGNATURES_DIR = "_signatures"
RUN_DIR_SUFFIX = ".qscope"


def run_dir(out: str | Path) -> Path:
    """Where a classify run keeps everything that is not the result (beside the result, never inside it)."""
    out = Path(out)
    return out.with_name(out.name + RUN_DIR_SUFFIX)


def build_plan(cfg: ClassifyConfig) -> Plan:
    if not cfg.out:
        raise InputError("no output path (--out)")
    out, side = Path(cfg.out), run_dir(cfg.out)
    light = cfg.resources.light
    res = light.actor_resources()
    classify = Step(Classify, {"seed_model": Ref("seed_model")}, res, light.batch_size)
    project = Step(
        Project, {"columns": Ref("result_columns"), "metadata": Ref("result_metadata")}, res, light.batch_size
    )
    stages = shared.head(
        cfg, side, side / SIGNATURES_DIR, label_column=cfg.label_column, check_result=lambda: check_result_path(out)
    )
    stages += [
        shared.seed_model_stage(cfg, cfg, label_column="label"),
        Stage(
            "classify",
            "flow",
            ("signatures", "seed_model", "output"),
            {"result": f"Parquet {out}"},
            lambda run: {"result": _classify(run, classify, project)},
            [classify, project],
            doc=f"in-process below {light.local_below} rows" if light.local_below else "",
        ),
        Stage(
            "finalize",
            "driver",
            ("result", "signatures"),
            {"summary": "dict"},
            lambda run: {"summary": _finalize(run)},
            doc="_SUCCESS (run id) last",
        ),
    ]
    return Plan("classify", cfg, stages)


def _classify(run: Run, classify: Step, project: Step) -> str:
    cfg: ClassifyConfig = run.config
    model, meta, sigs = run["seed_model"], run["meta"], run["signatures"]
    labels = sorted({x for x in model.seeds.labels if x is not None})
    scores = [f"score_{c}" for c in labels] if len(labels) > 1 else ["score"]
    run.values["result_columns"] = ["id", *scores, "predicted_label", "n_tokens", "truncated"]
    run.values["result_metadata"] = {
        "pipeline": "classify",
        "run_id": run.run_id,
        "model": meta.model,
        "sae": meta.sae,
        "layer": str(meta.layer),
        "pooling": meta.pooling,
        "method": cfg.method,
        "k": str(cfg.k),
    }
    n = sigs.totals()["good"]
    executor = "local" if n < cfg.resources.light.local_below else run.executor  # no actor start-up for small jobs
    dense = ["hidden_mean"] if meta.hidden_mean else []
    text = ["text"] if "texts" in probe_views(model.seeds, model.background, model.method) else []
    flow = Flow(
        sigs.read(["id", "feature_ids", "feature_values", "n_tokens", "truncated", *dense, *text]),
        [classify.resolve(run), project.resolve(run)],
        "classify",
    )
    out = Path(cfg.out)
    staged = staging_dir(run["output"], run.run_id, "result")
    with run.progress.stage("classify", total=n):
        flow.write_parquet(staged, executor, run.counter)
    if out.suffix == ".parquet":
        merge_parts(staged, out)
    else:
        publish_parts(staged, out, run.run_id)
    return str(out)


def check_result_path(out: Path) -> None:
    """`X.parquet` must be a file (or absent); a directory result must hold Parquet parts only (we replace them)."""
    if out.suffix == ".parquet" and out.is_dir():
        raise InputError(
            f"--out {out} is a directory; give a .parquet file name, or a directory path without the "
            ".parquet suffix for a directory of parts"
        )
    if out.suffix != ".parquet" and out.is_dir():
        foreign = [p.name for p in out.iterdir() if not (p.is_file() and p.suffix == ".parquet")]
        if foreign:
            raise InputError(
                f"output directory {out} holds more than Parquet parts ({', '.join(sorted(foreign)[:5])})"
                "; choose a new or empty directory"
            )


def _finalize(run: Run) -> dict:
    t = run["signatures"].totals()
    labels = sorted({x for x in run["seed_model"].seeds.labels if x is not None})
    summary = {
        "parquet": run["result"],
        "rows": t["good"],
        "classes": labels if len(labels) > 1 else None,
        "rejected": t["rejected"],
        "bad": t["bad"],
        "quarantined": sorted(t["quarantined"]),
        "files_encoded": t["files_encoded"],
        "files_reused": t["files_reused"],
        "signatures": str(run["signatures"].store.root),
        "run_id": run.run_id,
    }
    mark_success(run["output"], run.run_id, {"pipeline": "classify", "rows": t["good"], "rejected": t["rejected"]})
    return summary


def run(plan: Plan, executor: str | None = None, address: str | None = None) -> dict:
    from qscope.pipelines.common import run_plan

    return run_plan(plan, executor, address, lambda r: r["summary"])


def main(argv: list[str] | None = None) -> int:
    from qscope.pipelines.launch import module_main

    return module_main("classify", argv)


if __name__ == "__main__":
    sys.exit(main())
