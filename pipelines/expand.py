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
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from qscope.errors import InputError
from qscope.operators import Dedup, FilterByScore, MineBySignature, ScoreTargetFeatures, SteeredGenerate, TopRows
from qscope.operators.select import best_rows
from qscope.operators.writer import write_table_atomic
from qscope.pipelines import stages as shared
from qscope.pipelines.common import json_dump
from qscope.pipelines.config import ExpandConfig
from qscope.pipelines.describe import describe_stage
from qscope.pipelines.flow import Flow, Ref, Step, TableInput
from qscope.pipelines.outputs import SUCCESS, mark_success
from qscope.pipelines.plan import Plan, Run, Stage
from qscope.provenance import Provenance, add_provenance

OUTPUT_FILE = "samples.parquet"
REPORT_FILE = "report.html"
TARGETS_FILE = "targets.json"
SIGNATURES_DIR = "corpus_signatures"
INDEX_DIR = "corpus.index"


def build_plan(cfg: ExpandConfig) -> Plan:
    """The stages of an expand run, with their operators and map_batches resources (nothing is loaded)."""
    from qscope.generation import resolve_engine_kwargs

    res, syn, mining = cfg.resources, cfg.synthesis, cfg.mining
    engine_kwargs = resolve_engine_kwargs(syn.engine, syn.engine_kwargs, res.generate.num_gpus)  # fails before work
    out = Path(cfg.out)
    stages = shared.head(cfg, out, out / SIGNATURES_DIR, max_rows=cfg.max_corpus_rows)
    stages.append(shared.seed_model_stage(cfg, mining, cfg.targets))
    stages.append(
        Stage(
            "cutoff",
            "driver",
            ("seed_model", "signatures"),
            {"cutoff": "dict (CutoffEstimate)"},
            lambda run: {"cutoff": _cutoff(run)},
            doc=f"seed-classifier cut-off for precision {mining.target_precision} from the seeds' "
            "held-out scores (mining.min_score / filter.min_seed_score: auto)",
        )
    )
    if mining.enabled:
        min_score = Ref("cutoff_score") if mining.min_score == "auto" else mining.min_score
        mine = Step(
            MineBySignature,
            {"seed_model": Ref("seed_model"), "min_score": min_score, "drop_below": True},
            res.light.actor_resources(),
            res.light.batch_size,
        )
        top = Step(
            TopRows,
            {"column": "mine_score", "k": mining.max_results},
            res.light.actor_resources(),
            res.light.batch_size,
        )
        stages.append(
            Stage(
                "mine",
                "flow",
                ("signatures", "seed_model", *(("cutoff",) if mining.min_score == "auto" else ())),
                {"mined": "Table (<= max_results rows)"},
                lambda run: {"mined": _mine(run, mine, top)},
                [mine, top],
                doc=f"best {mining.max_results} corpus rows with mine_score >= {mining.min_score}",
            )
        )
    if cfg.save_corpus:
        stages.append(
            Stage(
                "index",
                "driver",
                ("signatures",),
                {"corpus_index": f"SignatureIndex {out / INDEX_DIR}"},
                lambda run: {"corpus_index": _index(run)},
                doc="kNN over the corpus without the model",
            )
        )
    score = Step(
        ScoreTargetFeatures,
        {
            "seed_model": Ref("seed_model"),
            "model_spec": cfg.model.to_dict(),
            "pooling": cfg.signatures.pooling,
            "top_n": cfg.signatures.top_n,
        },
        res.score.actor_resources(),
        res.score.batch_size,
    )
    if syn.n_samples > 0:
        gen = Step(
            SteeredGenerate,
            {
                "model_spec": cfg.model.to_dict(),
                "engine": syn.engine,
                "max_new_tokens": syn.max_new_tokens,
                "temperature": syn.temperature,
                "seed": syn.seed,
                "chat": syn.chat,
                "stop_strings": list(syn.stop_strings),
                "engine_kwargs": engine_kwargs,
            },
            res.generate.actor_resources(),
            res.generate.batch_size,
        )
        if syn.strengths == "auto":
            stages.append(
                Stage(
                    "choose_strength",
                    "flow",
                    ("seeds", "seed_model", "cutoff"),
                    {"strengths": "list[float]"},
                    lambda run: _choose_strength(run, gen, score),
                    [gen, score],
                    doc=f"pilot: {syn.pilot_samples} generations x strengths {syn.auto_strengths}, scored like the "
                    "outputs; the strength with the most samples passing the filter",
                )
            )
        stages += [
            Stage(
                "build_prompts",
                "driver",
                ("seeds", "seed_model", *(("strengths",) if syn.strengths == "auto" else ())),
                {"prompts": "Table"},
                lambda run: {"prompts": _build_prompts(run)},
                doc=f"{syn.n_samples} few-shot prompts x strengths {syn.strengths}",
            ),
            Stage(
                "generate",
                "flow",
                ("prompts",),
                {"generated": "Table"},
                lambda run: {"generated": _collect(run, "generate", run["prompts"], [gen])},
                [gen],
            ),
        ]
    reads = tuple(n for n in ("generated", "mined") if any(n in s.produces for s in stages))
    stages += [
        Stage(
            "score",
            "flow",
            ("seeds", "seed_model", *reads),
            {"scored": "Table", "seeds_scored": "Table"},
            lambda run: _score(run, score),
            [score],
            doc="generated + mined + seeds re-encoded (seeds are scored for comparison, never output)",
        ),
        Stage(
            "select",
            "driver",
            ("scored", "cutoff"),
            {"passed_filter": "Table", "final": "Table"},
            lambda run: _select(run),
            doc=f"filter (seed_score >= {cfg.filter.min_seed_score}, target_score >= "
            f"{cfg.filter.min_target_score}, ...), then drop near-duplicates "
            f"(word-3-gram {cfg.dedup.measure} >= {cfg.dedup.threshold}) and seed copies",
        ),
        Stage(
            "write",
            "driver",
            ("final", "seed_model", "output"),
            {"result": "dict"},
            lambda run: {"result": _write(run)},
            doc=f"{OUTPUT_FILE} (atomic), {TARGETS_FILE}, {REPORT_FILE}, then _SUCCESS",
        ),
    ]
    if cfg.report:  # labels + dashboards of the targets for report.html, before `write`
        mined = ("mined",) if "mined" in reads else ()
        stages.insert(len(stages) - 1, describe_stage(cfg, ("seeds", "seed_model", *mined)))
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
            best = (
                batch
                if best is None
                else best_rows(
                    pa.concat_tables([best, batch], promote_options="permissive"), "mine_score", cfg.mining.max_results
                )
            )
    return (
        best
        if best is not None
        else pa.table(
            {
                "id": pa.array([], pa.string()),
                "text": pa.array([], pa.string()),
                "mine_score": pa.array([], pa.float32()),
            }
        )
    )


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


def _cutoff(run: Run) -> dict | None:
    """The seed classifier's cut-off for mining.target_precision, estimated from the seeds' held-out scores
    (None when the seed model cannot give held-out scores, e.g. a single seed). Sets run["cutoff_score"]."""
    import logging

    cfg: ExpandConfig = run.config
    model = run["seed_model"]
    est = None
    try:
        from qscope.classify import precision_cutoff

        pos, bg = model.heldout_scores()
        run.values["seed_heldout_scores"] = pos.tolist()
        est = precision_cutoff(pos, bg, cfg.mining.target_precision)
    except InputError as exc:
        logging.getLogger(__name__).warning("no held-out cut-off (%s); auto thresholds fall back to 0.5", exc)
    n = run["signatures"].totals()["good"]
    out = None
    if est is not None:
        out = {**est.to_dict(), "est_rows": int(round(est.est_pass_fraction * n)), "corpus_rows": n}
    run.values["cutoff_score"] = float(est.cutoff) if est is not None else 0.5
    return out


def seed_scores(model, table: pa.Table) -> list[float]:
    """The seed classifier's score of each row's re-encoded signature (and text, when it reads the text view),
    without the features the row was steered with (`target_features`): a score of what the text says, not of what
    the steering put there."""
    from qscope.seed_model import seed_scores as classifier_scores

    if table.num_rows == 0:
        return []
    return classifier_scores(model.classifier(), without_steered_features(table)).scores[:, 0].astype(float).tolist()


def without_steered_features(table: pa.Table) -> pa.Table:
    """`table` with each row's signature stripped of the features it was steered with (`target_features`; a
    table without that column comes back as it is)."""
    from qscope.classify import without_features

    if "target_features" not in table.column_names:
        return table
    steered = [x or [] for x in table["target_features"].to_pylist()]
    fids, vals = without_features(table["feature_ids"], table["feature_values"], steered)
    for name, col in (("feature_ids", fids), ("feature_values", vals)):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pa.array(col, table.schema.field(i).type))
    return table


def filter_mask(cfg: ExpandConfig, table: pa.Table, cutoff_score: float):
    """Rows that pass `filter`: every row the text checks, min_target_score and min_seed_similarity; synthesized
    rows also min_seed_score (mined rows already passed their own cut-off, mining.min_score)."""
    import numpy as np

    f = cfg.filter
    keep = FilterByScore(
        {"target_score": f.min_target_score, "seed_similarity": f.min_seed_similarity},
        min_chars=f.min_chars,
        min_distinct_word_ratio=f.min_distinct_word_ratio,
    ).mask(table)
    if f.min_seed_score is not None and table.num_rows:
        cut = cutoff_score if f.min_seed_score == "auto" else float(f.min_seed_score)
        score = np.nan_to_num(table["seed_score"].to_numpy(zero_copy_only=False).astype(float), nan=-np.inf)
        synthesized = np.asarray([s == "synthesized" for s in table["source"].to_pylist()], bool)
        keep &= ~synthesized | (score >= cut)
    return keep


def _with_seed_scores(run: Run, table: pa.Table) -> pa.Table:
    from qscope.operators.base import set_column

    return set_column(table, "seed_score", pa.array(seed_scores(run["seed_model"], table), pa.float32()))


def _choose_strength(run: Run, gen: Step, score: Step) -> dict:
    """`synthesis.strengths: auto`: generate a pilot batch at every strength of `auto_strengths`, score it like the
    outputs and keep the strength with the most samples passing the filter (ties: the smaller strength)."""
    cfg: ExpandConfig = run.config
    syn = cfg.synthesis
    seeds = run["seeds"]
    grid = sorted({float(s) for s in syn.auto_strengths})
    pilot_syn = dataclasses.replace(syn, seed=syn.seed + 7919)  # other shots than the run's own prompts
    parts = []
    for j, s in enumerate(grid):
        t = build_prompts(
            seeds.ids, seeds.texts, run["seed_model"], pilot_syn, n_samples=syn.pilot_samples, strengths=[s]
        )
        parts.append(t.set_column(0, "id", pa.array([f"pilot-{j}-{i}" for i in range(t.num_rows)], pa.string())))
    prompts = pa.concat_tables(parts)
    generated = _collect(run, "pilot_generate", prompts, [gen.resolve(run)])
    scored = _collect(
        run,
        "pilot_score",
        generated.drop_columns([c for c in ("finish_reason",) if c in generated.column_names]),
        [score.resolve(run)],
    )
    scored = _with_seed_scores(run, scored)
    keep = filter_mask(cfg, scored, run["cutoff_score"])
    strengths = [float(x) for x in scored["strength"].to_pylist()]
    pilot = []
    for s in grid:
        rows = [i for i, x in enumerate(strengths) if abs(x - s) < 1e-9]
        pilot.append(
            {
                "strength": s,
                "n": len(rows),
                "passed": int(sum(keep[i] for i in rows)),
                "median_seed_score": float(np_median([scored["seed_score"][i].as_py() for i in rows])),
            }
        )
    run.values["strength_pilot"] = pilot
    return {"strengths": [pilot_choice(pilot)]}


def pilot_choice(pilot: list[dict]) -> float:
    """The strength of the pilot row ({"strength", "passed", ...}) with the most samples passing; ties: the smaller."""
    return max(pilot, key=lambda r: (r["passed"], -r["strength"]))["strength"]


def np_median(xs: list[float]) -> float:
    import numpy as np

    return float(np.median(xs)) if xs else float("nan")


def _build_prompts(run: Run) -> pa.Table:
    seeds = run["seeds"]
    return build_prompts(
        seeds.ids, seeds.texts, run["seed_model"], run.config.synthesis, strengths=run.get("strengths")
    )


PROMPT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", pa.string()),
        ("intervention", pa.string()),
        ("seed_ids", pa.list_(pa.string())),
        ("target_features", pa.list_(pa.int32())),
        ("strength", pa.float32()),
        ("source", pa.string()),
    ]
)


def build_prompts(
    ids: list[str],
    texts: list[str],
    model,
    syn,
    n_samples: int | None = None,
    strengths: list[float] | None = None,
    n_shots: int | None = None,
) -> pa.Table:
    """`n_samples` few-shot prompts (each with `n_shots` random seeds as examples; 0 = no examples) cycling
    through `strengths` (default: the config's); a steered row activates `features_per_sample` target features,
    cycling through the seed model's targets. Pure: the pipeline and bench/synthesis.py build prompts here."""
    from qscope.steering import Intervention

    n_samples = syn.n_samples if n_samples is None else n_samples
    strengths = list(syn.strengths if strengths is None else strengths)
    n_shots = syn.n_shots if n_shots is None else n_shots
    rng = random.Random(syn.seed)
    targets = model.target_ids
    reference = dict(zip(targets, model.target_reference))
    rows = []
    for i in range(n_samples):
        shots = rng.sample(range(len(ids)), min(n_shots, len(ids)))
        examples = "\n\n".join(
            syn.example_template.format(text=_shorten(texts[j], syn.max_example_chars)) for j in shots
        )
        prompt = syn.prompt_template.format(examples=examples, what=syn.what)
        if not shots:  # no examples: the template's blank lines around {examples} collapse to one
            prompt = re.sub(r"\n{3,}", "\n\n", prompt)
        strength = float(strengths[i % len(strengths)])
        feats = [
            targets[(i * syn.features_per_sample + j) % len(targets)]
            for j in range(min(syn.features_per_sample, len(targets)))
        ]
        iv = ""
        if strength != 0.0 and feats:
            inter = Intervention()
            for f in feats:
                # unit: strength 1.0 = the feature's typical (pooled max) activation on the seeds
                inter = inter.activate(f, strength, layer=model.meta.layer, scale=reference[f])
            iv = inter.to_json()
        rows.append(
            {
                "id": f"gen-{i:05d}",
                "prompt": prompt,
                "intervention": iv,
                "seed_ids": [ids[j] for j in shots],
                "target_features": feats if iv else [],
                "strength": strength,
                "source": "synthesized",
            }
        )
    return pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA)


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
        parts.append(
            pa.table(
                {
                    "id": mined["id"],
                    "text": mined["text"],
                    "source": pa.array(["mined"] * mined.num_rows, pa.string()),
                    "mine_score": mined["mine_score"],
                    "seed_ids": pa.array([[s] for s in mined["nearest_seed"].to_pylist()], pa.list_(pa.string())),
                }
            )
        )
    seeds = run["seeds"]
    parts.append(
        pa.table(
            {
                "id": pa.array(seeds.ids, pa.string()),
                "text": pa.array(seeds.texts, pa.string()),
                "source": pa.array(["seed"] * len(seeds), pa.string()),
            }
        )
    )
    # Rows with an empty generation still flow (scored 0) so the report can count them; the filter drops them.
    scored = _collect(run, "score", pa.concat_tables(parts, promote_options="permissive"), [score.resolve(run)])
    is_seed = pc.equal(scored["source"], "seed")
    return {"scored": scored.filter(pc.invert(is_seed)), "seeds_scored": scored.filter(is_seed)}


def _select(run: Run) -> dict:
    cfg: ExpandConfig = run.config
    scored = _with_seed_scores(run, run["scored"])
    run.values["scored"] = scored
    passed = scored.filter(pa.array(filter_mask(cfg, scored, run["cutoff_score"])))
    final = passed
    if passed.num_rows:  # best first (target_score), then drop near-duplicates of earlier rows and of the seeds
        seeds = run["seeds"]
        final = Dedup(cfg.dedup.threshold, reference=seeds.texts, reference_ids=seeds.ids, measure=cfg.dedup.measure)(
            passed.sort_by([("seed_score", "descending"), ("id", "ascending")])
        )
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
        key = "seed_score" if "seed_score" in table.column_names else "target_score"
        table = table.sort_by([(key, "descending"), ("id", "ascending")])
    table = order_columns(add_provenance(table, prov))
    md = {
        "pipeline": "expand",
        "run_id": run.run_id,
        "targets": [t["feature"] for t in targets],
        "config": cfg.to_dict(),
    }
    path = write_table_atomic(table, out / OUTPUT_FILE, md)
    json_dump(out / TARGETS_FILE, {"meta": dataclasses.asdict(meta), "targets": targets})
    report = None
    counts = _counts(run)
    if cfg.report:
        from qscope.report import write_report

        summary = {
            "run_id": run.run_id,
            "model": meta.model,
            "sae": meta.sae,
            "layer": meta.layer,
            "counts": {**counts, **quality_lines(run)},
            "timings": run.timings,
        }
        report = write_report(
            out / REPORT_FILE, path, run.get("seeds_scored"), targets, summary, features=run.get("feature_notes")
        )
    mark_success(out, run.run_id, {"pipeline": "expand", "rows": table.num_rows, "files": [OUTPUT_FILE]})
    result = {
        "parquet": str(path),
        "report": str(report) if report else None,
        "corpus_signatures": str(run["signatures"].store.root),
    }
    if run.get("corpus_index"):
        result["corpus_index"] = run["corpus_index"]
    return result


def quality(run: Run) -> dict:
    """Judge-free numbers a user can check: the seed classifier's score (with steered features removed) of the
    kept synthesized and mined rows next to the seeds' own held-out scores, the mining cut-off's estimate, and
    the strength pilot when `strengths: auto` ran."""
    import numpy as np

    out: dict = {}
    final = run.get("final")
    groups = {}
    if final is not None and final.num_rows and "seed_score" in final.column_names:
        src = final["source"].to_pylist()
        sc = final["seed_score"].to_pylist()
        for s in ("synthesized", "mined"):
            groups[s] = [x for x, y in zip(sc, src) if y == s and x is not None]
    if run.get("seed_heldout_scores"):
        groups["seeds (held-out)"] = run["seed_heldout_scores"]
    out["seed_score"] = {
        k: (
            {
                "n": len(v),
                "median": round(float(np.median(v)), 3),
                "p10": round(float(np.quantile(v, 0.1)), 3),
                "p90": round(float(np.quantile(v, 0.9)), 3),
            }
            if v
            else {"n": 0}
        )
        for k, v in groups.items()
    }
    if run.get("cutoff"):
        out["cutoff"] = run["cutoff"]
    if run.get("strength_pilot"):
        out["strength_pilot"] = run["strength_pilot"]
        out["strengths"] = run.get("strengths")
    return out


def quality_lines(run: Run) -> dict:
    """`quality(run)` as short report lines (the report shows the summary's counts as a table)."""
    q, lines = quality(run), {}
    for k, v in q.get("seed_score", {}).items():
        lines[f"seed_score of {k}"] = (
            f"median {v['median']:.2f} (p10 {v['p10']:.2f}, p90 {v['p90']:.2f}), n {v['n']}" if v.get("n") else "none"
        )
    c = q.get("cutoff")
    if c:
        cfg: ExpandConfig = run.config
        lines["mining cut-off (auto)"] = (
            f"seed_score >= {c['cutoff']:.3f} for precision {c['target_precision']:.2f}: est. precision "
            f"{c['est_precision']:.2f}, recall {c['est_recall']:.2f}, ~{c['est_rows']} of {c['corpus_rows']} corpus "
            f"rows (est. prevalence {c['est_prevalence']:.3f}){'' if c['reached'] else ' - target not reached'}"
            + ("" if cfg.mining.min_score == "auto" else f"; this run used min_score {cfg.mining.min_score}")
        )
    if q.get("strength_pilot"):
        lines["strength pilot (auto)"] = (
            "; ".join(f"s={p['strength']:g}: {p['passed']}/{p['n']} pass" for p in q["strength_pilot"])
            + f" -> {q['strengths']}"
        )
    return lines


def _empty_output() -> pa.Table:
    return pa.table(
        {"id": pa.array([], pa.string()), "text": pa.array([], pa.string()), "source": pa.array([], pa.string())}
    )


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
    reused = sum(
        run["signatures"].store.files[k].rows
        for k in run["signatures"].keys
        if k in run["signatures"].store.files and run["signatures"].store.files[k].run_id != run.run_id
    )
    return {
        "seeds": len(run["seeds"]),
        "corpus": t["good"],
        "corpus_rejected": t["rejected"],
        "truncated": run["seeds"].n_truncated,
        "corpus_reused": reused,
        "mined_candidates": n("mined"),
        "generated": n("generated"),
        "scored": n("scored"),
        "passed_filter": n("passed_filter"),
        "final": n("final"),
        **by_source,
    }


def run(plan: Plan, executor: str | None = None, address: str | None = None) -> dict:
    """Execute an expand plan; returns {parquet, report, rows, counts, timings, ...}."""
    from qscope.pipelines.common import run_plan

    return run_plan(plan, executor, address, _result)


def _result(r: Run) -> dict:
    return {
        **r["result"],
        "rows": r["final"].num_rows,
        "counts": _counts(r),
        "quality": quality(r),
        "targets": r["seed_model"].target_ids,
        "run_id": r.run_id,
    }


def main(argv: list[str] | None = None) -> int:
    from qscope.pipelines.launch import module_main

    return module_main("expand", argv)


if __name__ == "__main__":
    sys.exit(main())
