"""`expand`: seeds → encode seeds + corpus → seed model (targets, classifier) → mine the corpus → synthesize by
steering (+ few-shot seed prompts) → score (re-encode) → filter → dedup → samples.parquet + report.html.

    python -m qscope.pipelines.expand --config configs/demo.yaml            # embedded local Ray
    qscope run configs/demo.yaml --seeds my_seeds.jsonl --out out/mine
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m qscope.pipelines.expand --config configs/demo.yaml        # on a cluster (RAY_ADDRESS is set)

The corpus streams through Ray Data into the signature store `<out>/corpus_signatures/` (encoded once; later runs
with other seeds reuse it) and is mined from there; only the mined top rows, the prompts and the generations —
all bounded by the config, not by the corpus — come back to the driver. Output columns are documented in
`docs/output_schema.md` and in `qscope.report.schema`.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from qscope.operators import Dedup, FilterByScore, MineBySignature, ScoreTargetFeatures, SteeredGenerate, TopRows
from qscope.operators.base import Resources
from qscope.operators.select import best_rows
from qscope.operators.writer import Provenance, add_provenance, write_table_atomic
from qscope.pipelines import stages as shared
from qscope.pipelines.common import json_dump
from qscope.pipelines.describe import describe_stage
from qscope.pipelines.config import ExpandConfig
from qscope.pipelines.flow import Flow, Ref, Step, TableInput
from qscope.pipelines.outputs import SUCCESS, mark_success
from qscope.pipelines.plan import Plan, Run, Stage, execute

OUTPUT_FILE = "samples.parquet"
REPORT_FILE = "report.html"
TARGETS_FILE = "targets.json"
SIGNATURES_DIR = "corpus_signatures"
INDEX_DIR = "corpus.index"


def _res(rc) -> Resources:
    return Resources(**rc.resources())


def build_plan(cfg: ExpandConfig) -> Plan:
    """The stages of an expand run, with their operators and map_batches resources (nothing is loaded)."""
    from qscope.generation import resolve_engine_kwargs

    res, syn, mining = cfg.resources, cfg.synthesis, cfg.mining
    engine_kwargs = resolve_engine_kwargs(syn.engine, syn.engine_kwargs, res.generate.num_gpus)  # fails before work
    out = Path(cfg.out)
    stages = shared.head(cfg, out, out / SIGNATURES_DIR, max_rows=cfg.max_corpus_rows)
    t = cfg.targets
    stages.append(shared.seed_model_stage(
        cfg, mining.background_size, n_targets=t.n_features, target_method=t.method,
        min_seed_fraction=t.min_seed_fraction, fixed_targets=t.features, method=mining.method, k=mining.k))
    if mining.enabled:
        mine = Step(MineBySignature, {"seed_model": Ref("seed_model"), "min_score": mining.min_score,
                                      "drop_below": True}, _res(res.light), res.light.batch_size)
        top = Step(TopRows, {"column": "mine_score", "k": mining.max_results}, _res(res.light), res.light.batch_size)
        stages.append(Stage("mine", "flow", ("signatures", "seed_model"), {"mined": "Table (<= max_results rows)"},
                            lambda run: {"mined": _mine(run, mine, top)}, [mine, top],
                            doc=f"best {mining.max_results} corpus rows with mine_score >= {mining.min_score}"))
    if cfg.save_corpus:
        stages.append(Stage("index", "driver", ("signatures",), {"corpus_index": f"SignatureIndex {out / INDEX_DIR}"},
                            lambda run: {"corpus_index": _index(run)}, doc="kNN over the corpus without the model"))
    if syn.n_samples > 0:
        gen = Step(SteeredGenerate, {"model_spec": cfg.model.spec(), "engine": syn.engine,
                                     "max_new_tokens": syn.max_new_tokens, "temperature": syn.temperature,
                                     "seed": syn.seed, "chat": syn.chat, "stop_strings": list(syn.stop_strings),
                                     "engine_kwargs": engine_kwargs}, _res(res.generate), res.generate.batch_size)
        stages += [
            Stage("build_prompts", "driver", ("seeds", "seed_model"), {"prompts": "Table"},
                  lambda run: {"prompts": _build_prompts(run)},
                  doc=f"{syn.n_samples} few-shot prompts x strengths {syn.strengths}"),
            Stage("generate", "flow", ("prompts",), {"generated": "Table"},
                  lambda run: {"generated": _collect(run, "generate", run["prompts"], [gen])}, [gen]),
        ]
    score = Step(ScoreTargetFeatures, {"seed_model": Ref("seed_model"), "model_spec": cfg.model.spec(),
                                       "pooling": cfg.signatures.pooling, "top_n": cfg.signatures.top_n},
                 _res(res.score), res.score.batch_size)
    reads = tuple(n for n in ("generated", "mined") if any(n in s.produces for s in stages))
    stages += [
        Stage("score", "flow", ("seeds", "seed_model", *reads), {"scored": "Table", "seeds_scored": "Table"},
              lambda run: _score(run, score), [score],
              doc="generated + mined + seeds re-encoded (seeds are scored for comparison, never output)"),
        Stage("select", "driver", ("scored",), {"passed_filter": "Table", "final": "Table"},
              lambda run: _select(run),
              doc=f"filter (target_score >= {cfg.filter.min_target_score}, ...), then drop near-duplicates "
                  f"(word-3-gram {cfg.dedup.measure} >= {cfg.dedup.threshold}) and seed copies"),
        Stage("write", "driver", ("final", "seed_model", "output"), {"result": "dict"},
              lambda run: {"result": _write(run)},
              doc=f"{OUTPUT_FILE} (atomic), {TARGETS_FILE}, {REPORT_FILE}, then _SUCCESS"),
    ]
    if cfg.report:  # labels + dashboards of the targets for report.html, before `write`
        stages.insert(len(stages) - 1, describe_stage(cfg, ("seeds", "seed_model", *(r for r in reads if r == "mined"))))
    return Plan("expand", cfg, stages)


# --- stages -----------------------------------------------------------------------------------------------------
def _mine(run: Run, mine: Step, top: Step) -> pa.Table:
    cfg: ExpandConfig = run.config
    sigs = run["signatures"]
    n = sigs.totals()["good"]
    executor = "local" if n < cfg.resources.light.local_below else run.executor
    flow = Flow(sigs.read(["id", "text", "feature_ids", "feature_values"]), [mine.resolve(run), top], "mine")
    best = None
    with run.progress.stage("mine", total=n):
        for batch in flow.iter_tables(executor, run.counter):  # at most max_results rows per batch reach us
            best = batch if best is None else best_rows(pa.concat_tables([best, batch], promote_options="permissive"),
                                                        "mine_score", cfg.mining.max_results)
    return best if best is not None else pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                                                   "mine_score": pa.array([], pa.float32())})


def _index(run: Run) -> str:
    from qscope.operators import BuildSignatureIndex

    sigs = run["signatures"]
    builder = BuildSignatureIndex(run["meta"])
    for batch in Flow(sigs.read(["id", "feature_ids", "feature_values"]), [], "index").iter_tables("local"):
        builder(batch)
    if len(builder.index) == 0:
        return ""
    return str(builder.save(Path(run.config.out) / INDEX_DIR))


def _collect(run: Run, stage: str, table: pa.Table, steps: list[Step]) -> pa.Table:
    """Run small tables (prompts, candidates) through model steps and bring the result back."""
    if table.num_rows == 0:
        return table
    blocks = max(s.resources.concurrency for s in steps)
    with run.progress.stage(stage, total=table.num_rows):
        parts = list(Flow(TableInput(table, blocks), steps, stage).iter_tables(run.executor, run.counter))
    return pa.concat_tables(parts, promote_options="permissive") if parts else table.slice(0, 0)


def _build_prompts(run: Run) -> pa.Table:
    from qscope.steering import Intervention

    cfg: ExpandConfig = run.config
    syn, model = cfg.synthesis, run["seed_model"]
    seeds = run["seeds"]
    ids, texts = seeds.ids, seeds.texts
    rng = random.Random(syn.seed)
    targets = model.target_ids
    reference = dict(zip(targets, model.target_reference))
    rows = []
    for i in range(syn.n_samples):
        shots = rng.sample(range(len(ids)), min(syn.n_shots, len(ids)))
        examples = "\n\n".join(syn.example_template.format(text=_shorten(texts[j], syn.max_example_chars))
                               for j in shots)
        prompt = syn.prompt_template.format(examples=examples, what=syn.what)
        strength = float(syn.strengths[i % len(syn.strengths)])
        feats = [targets[(i * syn.features_per_sample + j) % len(targets)]
                 for j in range(min(syn.features_per_sample, len(targets)))]
        iv = ""
        if strength != 0.0 and feats:
            inter = Intervention()
            for f in feats:
                # unit: strength 1.0 = the feature's typical (pooled max) activation on the seeds
                inter = inter.activate(f, strength, layer=model.meta.layer, scale=reference[f])
            iv = inter.to_json()
        rows.append({"id": f"gen-{i:05d}", "prompt": prompt, "intervention": iv,
                     "seed_ids": [ids[j] for j in shots], "target_features": feats if iv else [],
                     "strength": strength, "source": "synthesized"})
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.string()), ("prompt", pa.string()), ("intervention", pa.string()),
        ("seed_ids", pa.list_(pa.string())), ("target_features", pa.list_(pa.int32())),
        ("strength", pa.float32()), ("source", pa.string())]))


def _shorten(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " ..."


def _score(run: Run, score: Step) -> dict:
    parts = []
    gen = run.get("generated")
    if gen is not None and gen.num_rows:
        parts.append(gen.drop_columns([c for c in ("finish_reason",) if c in gen.column_names]))
    mined = run.get("mined")
    if mined is not None and mined.num_rows:
        parts.append(pa.table({"id": mined["id"], "text": mined["text"],
                               "source": pa.array(["mined"] * mined.num_rows, pa.string()),
                               "mine_score": mined["mine_score"],
                               "seed_ids": pa.array([[s] for s in mined["nearest_seed"].to_pylist()],
                                                    pa.list_(pa.string()))}))
    seeds = run["seeds"]
    parts.append(pa.table({"id": pa.array(seeds.ids, pa.string()), "text": pa.array(seeds.texts, pa.string()),
                           "source": pa.array(["seed"] * len(seeds), pa.string())}))
    # Rows with an empty generation still flow (scored 0) so the report can count them; the filter drops them.
    scored = _collect(run, "score", pa.concat_tables(parts, promote_options="permissive"), [score.resolve(run)])
    is_seed = pc.equal(scored["source"], "seed")
    return {"scored": scored.filter(pc.invert(is_seed)), "seeds_scored": scored.filter(is_seed)}


def _select(run: Run) -> dict:
    cfg: ExpandConfig = run.config
    f = cfg.filter
    passed = FilterByScore({"target_score": f.min_target_score, "seed_similarity": f.min_seed_similarity},
                           min_chars=f.min_chars, min_distinct_word_ratio=f.min_distinct_word_ratio)(run["scored"])
    final = passed
    if passed.num_rows:  # best first (target_score), then drop near-duplicates of earlier rows and of the seeds
        seeds = run["seeds"]
        final = Dedup(cfg.dedup.threshold, reference=seeds.texts, reference_ids=seeds.ids, measure=cfg.dedup.measure)(
            passed.sort_by([("target_score", "descending"), ("id", "ascending")]))
    return {"passed_filter": passed, "final": final}


def _write(run: Run) -> dict:
    from qscope.report.schema import order_columns

    cfg: ExpandConfig = run.config
    out, meta, model = Path(cfg.out), run["meta"], run["seed_model"]
    targets = model.targets
    final = run["final"]
    (out / SUCCESS).unlink(missing_ok=True)  # from here until the new marker, no reader trusts this directory
    prov = Provenance(meta.model, meta.sae, meta.layer, cfg.synthesis.engine, run.run_id)
    table = final if final.num_rows else _empty_output()
    if table.num_rows:
        table = table.sort_by([("target_score", "descending"), ("id", "ascending")])
    table = order_columns(add_provenance(table, prov))
    md = {"pipeline": "expand", "run_id": run.run_id, "targets": [t["feature"] for t in targets],
          "config": cfg.to_dict()}
    path = write_table_atomic(table, out / OUTPUT_FILE, md)
    json_dump(out / TARGETS_FILE, {"meta": dataclasses.asdict(meta), "targets": targets})
    report = None
    counts = _counts(run)
    if cfg.report:
        from qscope.report import write_report

        summary = {"run_id": run.run_id, "model": meta.model, "sae": meta.sae, "layer": meta.layer,
                   "counts": counts, "timings": run.timings}
        report = write_report(out / REPORT_FILE, path, run.get("seeds_scored"), targets, summary,
                              features=run.get("feature_notes"))
    mark_success(out, run.run_id, {"pipeline": "expand", "rows": table.num_rows, "files": [OUTPUT_FILE]})
    result = {"parquet": str(path), "report": str(report) if report else None,
              "corpus_signatures": str(run["signatures"].store.root)}
    if run.get("corpus_index"):
        result["corpus_index"] = run["corpus_index"]
    return result


def _empty_output() -> pa.Table:
    return pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                     "source": pa.array([], pa.string())})


def _counts(run: Run) -> dict:
    def n(key):
        t = run.get(key)
        return 0 if t is None else t.num_rows

    final = run.get("final")
    by_source = {}
    if final is not None and final.num_rows:
        for s in ("synthesized", "mined"):
            by_source[f"final_{s}"] = int(pc.sum(pc.equal(final["source"], s)).as_py() or 0)
    t = run["signatures"].totals()
    reused = sum(run["signatures"].store.files[k].rows for k in run["signatures"].keys
                 if k in run["signatures"].store.files and run["signatures"].store.files[k].run_id != run.run_id)
    return {"seeds": len(run["seeds"]), "corpus": t["good"], "corpus_rejected": t["rejected"],
            "truncated": run["seeds"].n_truncated, "corpus_reused": reused,
            "mined_candidates": n("mined"), "generated": n("generated"), "scored": n("scored"),
            "passed_filter": n("passed_filter"), "final": n("final"), **by_source}


def run(plan: Plan, executor: str | None = None, address: str | None = None) -> dict:
    """Execute an expand plan; returns {parquet, report, rows, counts, timings, ...}."""
    from qscope.pipelines.common import start_run

    t0 = time.perf_counter()
    r = execute(plan, start_run(plan.config, executor, address))
    return {**r["result"], "rows": r["final"].num_rows, "counts": _counts(r), "targets": r["seed_model"].target_ids,
            "run_id": r.run_id, "wall_s": round(time.perf_counter() - t0, 1), "timings": r.timings,
            "throughput": r.progress.stats()}


def config_from_args(args) -> ExpandConfig:
    cfg = ExpandConfig.from_yaml(args.config)
    for key in ("seeds", "corpus", "out", "executor"):
        if getattr(args, key, None):
            setattr(cfg, key, getattr(args, key))
    return cfg


def _main_run(args) -> dict | None:
    cfg = config_from_args(args)
    plan = build_plan(cfg)
    if args.plan:
        print(plan.describe())
        return None
    result = run(plan, address=args.address)
    if not args.json:
        print(f"wrote {result['rows']} samples to {result['parquet']}")
        if result.get("report"):
            print(f"review report: {result['report']}")
    return result


def main(argv: list[str] | None = None) -> int:
    from qscope.pipelines.common import module_main

    return module_main("python -m qscope.pipelines.expand", __doc__, _main_run, argv)


if __name__ == "__main__":
    sys.exit(main())
