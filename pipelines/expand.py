"""`expand`: seeds → encode seeds + corpus → contrastive target features → mine the corpus → synthesize by
steering (+ few-shot seed prompts) → score (re-encode) → filter → dedup → samples.parquet + report.html.

    python -m qscope.pipelines.expand --config configs/demo.yaml            # embedded local Ray
    qscope run configs/demo.yaml --seeds my_seeds.jsonl --out out/mine
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m qscope.pipelines.expand --config configs/demo.yaml        # on a cluster (RAY_ADDRESS is set)

The plan is built before anything runs (`build_plan(cfg).describe()`); `run(plan)` executes it. Output columns
are documented in `docs/output_schema.md` and in `qscope.report.schema`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa

from qscope.errors import InputError
from qscope.operators import (
    Dedup,
    EncodeSignatures,
    FilterByScore,
    MineBySignature,
    Provenance,
    ScoreTargetFeatures,
    SeedSignatures,
    SteeredGenerate,
    WriteParquetShards,
    background_idf,
    background_sample,
    finalize_shards,
)
from qscope.operators.writer import SHARD_DIR, SUCCESS
from qscope.pipelines import corpus_store
from qscope.pipelines.common import json_dump, read_corpus, read_seeds, select_targets, signature_meta
from qscope.pipelines.config import ExpandConfig
from qscope.pipelines.plan import Plan, Ref, Stage, execute

log = logging.getLogger(__name__)

OUTPUT_FILE = "samples.parquet"
REPORT_FILE = "report.html"
TARGETS_FILE = "targets.json"


def build_plan(cfg: ExpandConfig) -> Plan:
    """The stages of an expand run, with their operators and map_batches resources (nothing is loaded)."""
    res = cfg.resources
    spec = cfg.model.spec()
    sig = {"pooling": cfg.signatures.pooling, "top_n": cfg.signatures.top_n}
    stages = [
        Stage("read_inputs", "driver", output="inputs", fn=lambda ctx: _read_inputs(cfg, ctx),
              doc="read seeds + corpus (JSONL/CSV/Parquet), validate, truncate long docs"),
        Stage("encode", "map", input="to_encode", output="encoded", operator=EncodeSignatures,
              constructor_kwargs={"model_spec": spec, **sig, "batch_size": res.encode.batch_size},
              resources=res.encode.resources(), batch_size=res.encode.batch_size),
        Stage("select_targets", "driver", output="targets", fn=lambda ctx: _select_targets(cfg, ctx),
              doc="contrastive target features: seeds vs corpus background"
                  + (f"; save {corpus_store.SIGNATURES_FILE} + {corpus_store.INDEX_DIR}" if cfg.save_corpus else "")),
    ]
    if cfg.mining.enabled and cfg.corpus:
        stages += [
            Stage("mine", "map", input="corpus_encoded", output="mine_scored", operator=MineBySignature,
                  constructor_kwargs={"seeds": Ref("seed_signatures"), "targets": Ref("target_ids"),
                                      "target_reference": Ref("target_reference"),
                                      "background_df": Ref("background_df"), "background_n": Ref("background_n"),
                                      "background": Ref("background_sample"), "method": cfg.mining.method,
                                      "k": cfg.mining.k},
                  resources=res.light.resources(), batch_size=res.light.batch_size,
                  local_below=res.light.local_below),
            Stage("select_mined", "driver", output="mined", fn=lambda ctx: _select_mined(cfg, ctx),
                  doc=f"best {cfg.mining.max_results} corpus rows with mine_score >= {cfg.mining.min_score}"),
        ]
    if cfg.synthesis.n_samples > 0:
        syn = cfg.synthesis
        stages += [
            Stage("build_prompts", "driver", output="prompts", fn=lambda ctx: _build_prompts(cfg, ctx),
                  doc=f"{syn.n_samples} few-shot prompts x strengths {syn.strengths}"),
            Stage("generate", "map", input="prompts", output="generated", operator=SteeredGenerate,
                  constructor_kwargs={"model_spec": spec, "engine": syn.engine, "max_new_tokens": syn.max_new_tokens,
                                      "temperature": syn.temperature, "seed": syn.seed, "chat": syn.chat,
                                      "stop_strings": list(syn.stop_strings)},
                  resources=res.generate.resources(), batch_size=res.generate.batch_size),
        ]
    stages += [
        Stage("collect", "driver", output="candidates", fn=_collect_candidates,
              doc="generated + mined + seeds (seeds are scored for comparison, never output)"),
        Stage("score", "map", input="candidates", output="scored", operator=ScoreTargetFeatures,
              constructor_kwargs={"targets": Ref("target_ids"), "target_reference": Ref("target_reference"),
                                  "model_spec": spec, **sig, "seeds": Ref("seed_signatures"),
                                  "background_df": Ref("background_df"), "background_n": Ref("background_n")},
              resources=res.score.resources(), batch_size=res.score.batch_size),
        Stage("split", "driver", output="outputs_scored", fn=_split_seeds,
              doc="set the scored seeds aside (report: seeds vs outputs)"),
        Stage("filter", "map", input="outputs_scored", output="filtered", operator=FilterByScore,
              constructor_kwargs={"rules": {"target_score": cfg.filter.min_target_score,
                                            "seed_similarity": cfg.filter.min_seed_similarity},
                                  "min_chars": cfg.filter.min_chars,
                                  "min_distinct_word_ratio": cfg.filter.min_distinct_word_ratio},
              resources=res.light.resources(), batch_size=res.light.batch_size,
                  local_below=res.light.local_below),
        Stage("dedup", "driver", output="final", fn=lambda ctx: _dedup(cfg, ctx),
              doc=f"drop near-duplicates (word-3-gram {cfg.dedup.measure} >= {cfg.dedup.threshold}) and seed copies"),
        Stage("write", "map", input="final", output="shards", operator=WriteParquetShards,
              constructor_kwargs={"out_dir": cfg.out, "provenance": Ref("provenance")},
              resources=res.light.resources(), batch_size=res.light.batch_size,
                  local_below=res.light.local_below),
        Stage("finalize", "driver", output="result", fn=lambda ctx: _finalize(cfg, ctx),
              doc=f"merge shards -> {OUTPUT_FILE} (atomic), {TARGETS_FILE}, {REPORT_FILE}, {SUCCESS}"),
    ]
    return Plan("expand", cfg, stages)


# --- driver stages -------------------------------------------------------------------------------------------
def _read_inputs(cfg: ExpandConfig, ctx: dict) -> dict:
    seeds = read_seeds(cfg.seeds, cfg)
    corpus = read_corpus(cfg.corpus, cfg, cfg.max_corpus_rows) if cfg.corpus else None
    ctx["meta"] = signature_meta(cfg.model, cfg.signatures)  # loads the SAE: a bad SAE fails before any work
    out = Path(cfg.out)
    # A new run invalidates the old completion marker and shards first: readers never mix two runs.
    (out / SUCCESS).unlink(missing_ok=True)
    shutil.rmtree(out / SHARD_DIR, ignore_errors=True)
    parts = [_role_table(seeds.table, "seed")]
    ctx["corpus_reused"] = None
    if corpus is not None:
        rows = _role_table(corpus.table, "corpus")
        if cfg.corpus_signatures:  # encode once, expand many times: only new / edited rows go to the LM
            ctx["corpus_reused"], rows = corpus_store.split_reusable(cfg.corpus_signatures, ctx["meta"], rows)
        parts.append(rows)
    ctx["to_encode"] = pa.concat_tables(parts, promote_options="permissive")
    ctx["seeds"], ctx["corpus"] = seeds, corpus
    reused = 0 if ctx["corpus_reused"] is None else ctx["corpus_reused"].num_rows
    return {"seeds": seeds.summary(), "corpus": corpus.summary() if corpus else None, "corpus_reused": reused}


def _role_table(table: pa.Table, role: str) -> pa.Table:
    keep = [c for c in ("id", "text", "label") if c in table.column_names]
    t = table.select(keep)
    if "label" in t.column_names:
        t = t.set_column(t.column_names.index("label"), "label", t.column("label").cast(pa.string()))
    return t.append_column("role", pa.array([role] * t.num_rows, pa.string()))


def _by_role(table: pa.Table, role: str) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.equal(table.column("role"), role))


def _select_targets(cfg: ExpandConfig, ctx: dict) -> list[dict]:
    enc, meta = ctx["encoded"], ctx["meta"]
    seeds = _by_role(enc, "seed")
    corpus = _by_role(enc, "corpus")
    if ctx.get("corpus_reused") is not None:
        corpus = pa.concat_tables([corpus, ctx["corpus_reused"]], promote_options="permissive")
    # order seeds as in the file (Ray may reorder rows)
    order = {i: n for n, i in enumerate(ctx["seeds"].ids)}
    seeds = seeds.take(pa.array(sorted(range(seeds.num_rows), key=lambda r: order[seeds.column("id")[r].as_py()])))
    ctx["seeds_encoded"], ctx["corpus_encoded"] = seeds, corpus
    if corpus.num_rows:
        background = corpus
    else:  # no corpus: contrast against a built-in background sample would need more encoding; use the seeds' own IDF
        raise InputError("expand needs a corpus (config `corpus:`) as background for target selection")
    targets = select_targets(seeds, background, meta.d_sae, cfg.targets.n_features, cfg.targets.method,
                             cfg.targets.min_seed_fraction, cfg.targets.features)
    ctx["target_ids"] = [t["feature"] for t in targets]
    ctx["target_reference"] = [t["reference"] for t in targets]
    ctx["seed_signatures"] = SeedSignatures.from_table(seeds, meta).to_dict()
    ctx["background_df"], ctx["background_n"] = background_idf(background, meta.d_sae)
    ctx["background_sample"] = background_sample(background, cfg.mining.background_size)
    ctx["provenance"] = Provenance(meta.model, meta.sae, meta.layer, cfg.synthesis.engine, ctx["run_id"]).to_dict()
    if cfg.save_corpus:
        ctx["corpus_files"] = corpus_store.save(corpus, meta, cfg.out)
    return targets


def _select_mined(cfg: ExpandConfig, ctx: dict) -> pa.Table:
    t = ctx["mine_scored"]
    t = t.filter(pa.array(t.column("mine_score").to_numpy(zero_copy_only=False) >= cfg.mining.min_score))
    t = t.sort_by([("mine_score", "descending"), ("id", "ascending")]).slice(0, cfg.mining.max_results)
    return t


def _build_prompts(cfg: ExpandConfig, ctx: dict) -> pa.Table:
    from qscope.steering import Intervention

    syn = cfg.synthesis
    seeds = ctx["seeds"]
    ids, texts = seeds.ids, seeds.texts
    rng = random.Random(syn.seed)
    targets = ctx["target_ids"]
    reference = dict(zip(targets, ctx["target_reference"]))
    layer = ctx["meta"].layer
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
                inter = inter.activate(f, strength, layer=layer, scale=reference[f])
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
    return text if len(text) <= n else text[: n].rsplit(" ", 1)[0] + " ..."


def _collect_candidates(ctx: dict) -> pa.Table:
    parts = []
    gen = ctx.get("generated")
    if gen is not None and gen.num_rows:
        parts.append(gen.drop_columns([c for c in ("finish_reason",) if c in gen.column_names]))
    mined = ctx.get("mined")
    if mined is not None and mined.num_rows:
        m = mined.select(["id", "text"])
        m = m.append_column("source", pa.array(["mined"] * m.num_rows, pa.string()))
        m = m.append_column("mine_score", mined.column("mine_score"))
        m = m.append_column("seed_ids", pa.array([[s] for s in mined.column("nearest_seed").to_pylist()],
                                                 pa.list_(pa.string())))
        parts.append(m)
    seeds = ctx["seeds"]
    s = pa.table({"id": pa.array(seeds.ids, pa.string()), "text": pa.array(seeds.texts, pa.string()),
                  "source": pa.array(["seed"] * len(seeds), pa.string())})
    parts.append(s)
    table = pa.concat_tables(parts, promote_options="permissive")
    # Rows with an empty generation still flow (scored 0) so the report can count them; filter drops them.
    return table


def _split_seeds(ctx: dict) -> pa.Table:
    import pyarrow.compute as pc

    scored = ctx["scored"]
    ctx["seeds_scored"] = scored.filter(pc.equal(scored["source"], "seed"))
    return scored.filter(pc.not_equal(scored["source"], "seed"))


def _dedup(cfg: ExpandConfig, ctx: dict) -> pa.Table:
    """Best first (target_score), then drop near-duplicates of earlier rows and of the seeds."""
    t = ctx["filtered"]
    if t.num_rows == 0:
        return t
    t = t.sort_by([("target_score", "descending"), ("id", "ascending")])
    seeds = ctx["seeds"]
    return Dedup(cfg.dedup.threshold, reference=seeds.texts, reference_ids=seeds.ids, measure=cfg.dedup.measure)(t)


def _finalize(cfg: ExpandConfig, ctx: dict) -> dict:
    out = Path(cfg.out)
    final = ctx["final"]
    targets = ctx["targets"]
    json_dump(out / TARGETS_FILE, {"meta": dataclasses.asdict(ctx["meta"]), "targets": targets})
    meta = {"pipeline": "expand", "run_id": ctx["run_id"], "targets": [t["feature"] for t in targets],
            "config": cfg.to_dict()}
    if final.num_rows:
        from qscope.report.schema import order_columns

        path = finalize_shards(out, OUTPUT_FILE, metadata=meta, sort_by="target_score", descending=True,
                               transform=order_columns)
    else:
        from qscope.operators.writer import add_provenance, mark_complete, write_table_atomic

        path = write_table_atomic(add_provenance(_empty_output(), ctx["provenance"]), out / OUTPUT_FILE, meta)
        mark_complete(out, {"rows": 0, "files": [OUTPUT_FILE]})
    report = None
    if cfg.report:
        from qscope.report import write_report

        m = ctx["meta"]
        summary = {"run_id": ctx["run_id"], "model": m.model, "sae": m.sae, "layer": m.layer,
                   "counts": _counts(ctx), "timings": ctx["timings"]}
        report = write_report(out / REPORT_FILE, path, ctx.get("seeds_scored"), targets, summary)
    return {"parquet": str(path), "report": str(report) if report else None, **ctx.get("corpus_files", {})}


def _empty_output() -> pa.Table:
    return pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                     "source": pa.array([], pa.string())})


def run(plan: Plan, executor: str | None = None, address: str | None = None) -> dict:
    """Execute an expand plan; returns {parquet, report, rows, counts, timings, ...}."""
    cfg: ExpandConfig = plan.config
    executor = executor or cfg.executor
    if executor == "ray":
        from qscope.pipelines.runtime import init_ray

        init_ray(address)
    t0 = time.perf_counter()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    ctx = {"run_id": run_id}

    ctx = execute(plan, ctx, executor)
    final = ctx["final"]
    counts = _counts(ctx)
    result = {**ctx["result"], "rows": final.num_rows, "counts": counts,
              "targets": ctx["target_ids"], "run_id": run_id, "wall_s": round(time.perf_counter() - t0, 1),
              "timings": ctx["timings"]}
    return result


def _counts(ctx: dict) -> dict:
    def n(key):
        t = ctx.get(key)
        return 0 if t is None else t.num_rows

    import pyarrow.compute as pc

    final = ctx["final"]
    by_source = {}
    if final.num_rows:
        for s in ("synthesized", "mined"):
            by_source[s] = int(pc.sum(pc.equal(final["source"], s)).as_py() or 0)
    return {"seeds": len(ctx["seeds"]), "corpus": 0 if ctx["corpus"] is None else len(ctx["corpus"]),
            "truncated": ctx["seeds"].n_truncated + (ctx["corpus"].n_truncated if ctx["corpus"] else 0),
            "corpus_reused": n("corpus_reused"),
            "mined_candidates": n("mined"), "generated": n("generated"), "scored": n("outputs_scored"),
            "passed_filter": n("filtered"), "final": final.num_rows, **{f"final_{k}": v for k, v in by_source.items()}}


def config_from_args(args) -> ExpandConfig:
    cfg = ExpandConfig.from_yaml(args.config)
    if args.seeds:
        cfg.seeds = args.seeds
    if getattr(args, "corpus", None):
        cfg.corpus = args.corpus
    if args.out:
        cfg.out = args.out
    if getattr(args, "executor", None):
        cfg.executor = args.executor
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
