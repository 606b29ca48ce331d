"""`classify`: label a corpus from labelled seeds — one `score` per row (one class), or `score_<class>` per class.

    qscope classify --seeds data/demo/classify_seeds.jsonl --corpus data/demo/corpus.jsonl --out labels.parquet
    python -m qscope.pipelines.classify --config configs/classify.yaml

Seeds: rows with `text` and optional `label` (no label / one label → a single `score`; with the default "probe",
the probability of belonging with the seeds against a corpus sample). Corpus: rows with `id`, `text`.
Output (atomic Parquet): id, score or score_<class>...,
predicted_label (several classes), n_tokens, truncated; schema metadata records model / SAE / layer.
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa
import pyarrow.compute as pc

from qscope.operators import Classify, EncodeSignatures, SeedSignatures, background_sample, write_table_atomic
from qscope.pipelines.common import read_corpus, read_seeds, signature_meta
from qscope.pipelines.config import ClassifyConfig
from qscope.pipelines.plan import Plan, Ref, Stage, execute


def build_plan(cfg: ClassifyConfig) -> Plan:
    res = cfg.resources
    sig = {"pooling": cfg.signatures.pooling, "top_n": cfg.signatures.top_n}
    return Plan("classify", cfg, [
        Stage("read_inputs", "driver", output="inputs", fn=lambda ctx: _read(cfg, ctx),
              doc="read labelled seeds + corpus"),
        Stage("encode", "map", input="to_encode", output="encoded", operator=EncodeSignatures,
              constructor_kwargs={"model_spec": cfg.model.spec(), **sig, "batch_size": res.encode.batch_size},
              resources=res.encode.resources(), batch_size=res.encode.batch_size),
        Stage("prepare", "driver", output="corpus_encoded", fn=lambda ctx: _prepare(cfg, ctx),
              doc="seed signatures + corpus IDF background"),
        Stage("classify", "map", input="corpus_encoded", output="classified", operator=Classify,
              constructor_kwargs={"seeds": Ref("seed_signatures"), "background": Ref("background_sample"),
                                  "method": cfg.method, "k": cfg.k},
              resources=res.light.resources(), batch_size=res.light.batch_size,
                  local_below=res.light.local_below),
        Stage("write", "driver", output="result", fn=lambda ctx: _write(cfg, ctx),
              doc=f"atomic Parquet {cfg.out}"),
    ])


def _read(cfg: ClassifyConfig, ctx: dict) -> dict:
    seeds = read_seeds(cfg.seeds, cfg)
    corpus = read_corpus(cfg.corpus, cfg)
    if not cfg.out:
        from qscope.errors import InputError

        raise InputError("no output path (--out)")
    ctx["meta"] = signature_meta(cfg.model, cfg.signatures)
    labels = seeds.column(cfg.label_column)
    s = pa.table({"id": pa.array([f"seed:{i}" for i in seeds.ids], pa.string()), "text": seeds.table["text"],
                  "label": pa.array([None if x is None else str(x) for x in labels] if labels else [None] * len(seeds),
                                    pa.string()),
                  "role": pa.array(["seed"] * len(seeds), pa.string())})
    c = pa.table({"id": corpus.table["id"], "text": corpus.table["text"],
                  "label": pa.nulls(len(corpus), pa.string()), "role": pa.array(["corpus"] * len(corpus), pa.string())})
    ctx["to_encode"] = pa.concat_tables([s, c])
    ctx["corpus_ids"] = corpus.ids
    ctx["seeds"], ctx["corpus"] = seeds, corpus
    return {"seeds": seeds.summary(), "corpus": corpus.summary()}


def _prepare(cfg: ClassifyConfig, ctx: dict) -> pa.Table:
    enc, meta = ctx["encoded"], ctx["meta"]
    seeds = enc.filter(pc.equal(enc["role"], "seed"))
    corpus = enc.filter(pc.equal(enc["role"], "corpus"))
    ctx["seed_signatures"] = SeedSignatures.from_table(seeds, meta, "label").to_dict()
    ctx["background_sample"] = background_sample(corpus, cfg.background_size)
    return corpus.drop_columns(["label", "role"])


def _write(cfg: ClassifyConfig, ctx: dict) -> dict:
    t = ctx["classified"]
    order = {i: n for n, i in enumerate(ctx["corpus_ids"])}
    t = t.take(pa.array(sorted(range(t.num_rows), key=lambda r: order[t["id"][r].as_py()])))
    keep = ["id"] + [c for c in t.column_names if c == "score" or c.startswith("score_")]
    keep += [c for c in ("predicted_label", "n_tokens", "truncated") if c in t.column_names]
    t = t.select(keep)
    meta = ctx["meta"]
    md = {"pipeline": "classify", "model": meta.model, "sae": meta.sae, "layer": str(meta.layer),
          "pooling": meta.pooling, "method": cfg.method, "k": str(cfg.k)}
    path = write_table_atomic(t, cfg.out, md)
    classes = [c[len("score_"):] for c in t.column_names if c.startswith("score_")]
    return {"parquet": str(path), "rows": t.num_rows, "classes": classes or None}


def run(plan: Plan, executor: str | None = None, address: str | None = None) -> dict:
    cfg: ClassifyConfig = plan.config
    executor = executor or cfg.executor
    if executor == "ray":
        from qscope.pipelines.runtime import init_ray

        init_ray(address)
    t0 = time.perf_counter()
    ctx = execute(plan, {}, executor)
    return {**ctx["result"], "wall_s": round(time.perf_counter() - t0, 1), "timings": ctx["timings"]}


def main(argv: list[str] | None = None) -> int:
    from qscope.pipelines.common import module_main, plan_or_run

    def run_fn(args):
        return plan_or_run(ClassifyConfig, build_plan, run, args)

    return module_main("python -m qscope.pipelines.classify", __doc__, run_fn, argv)


if __name__ == "__main__":
    sys.exit(main())
