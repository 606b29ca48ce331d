"""`mine`: scheduled, incremental corpus mining — each run processes only corpus files that are new or changed.

    python -m qscope.pipelines.mine --config configs/mine.yaml           # e.g. from cron, hourly
    qscope run configs/mine.yaml

State (`<out>/state.json`, written atomically after every file): per corpus file its size, mtime and sha256, the
rows read and the output written. A run:
1. fingerprints the seeds + the scoring settings; if they changed since the state was written, starts over;
2. on the first run, builds the background (corpus IDF + contrastive target features, from the files of that
   run) and keeps it in `<out>/background.json`, so later files are scored on the same scale;
3. for every new or changed file: read → encode (Ray actor) → MineBySignature → keep `mine_score >= min_score` →
   write `<out>/mined/<file-key>.parquet` atomically (a changed file *replaces* its output) → update the state.

Idempotent: a rerun with no changed files does nothing and adds no rows. Resumable: a crash loses at most the file
in progress (its output is rewritten under the same name next time, so nothing is duplicated). `_SUCCESS` is
rewritten at the end of every complete run. Read the result with `pl.read_parquet("<out>/mined/*.parquet")`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from pathlib import Path

import pyarrow as pa

from qscope.errors import InputError
from qscope.io import file_fingerprint, list_corpus_files, read_records
from qscope.operators import (
    EncodeSignatures,
    MineBySignature,
    SeedSignatures,
    background_idf,
    background_sample,
    write_table_atomic,
)
from qscope.operators.writer import SUCCESS, mark_complete
from qscope.pipelines.common import json_dump, read_seeds, select_targets, signature_meta
from qscope.pipelines.config import MineConfig
from qscope.pipelines.plan import Plan, Ref, Stage, execute

STATE = "state.json"
BACKGROUND = "background.json"
MINED_DIR = "mined"


def build_plan(cfg: MineConfig) -> Plan:
    """Stages run once per run (seeds, background) and, for each new / changed file, the per-file stages."""
    res = cfg.resources
    sig = {"pooling": cfg.signatures.pooling, "top_n": cfg.signatures.top_n}
    return Plan("mine", cfg, [
        Stage("scan", "driver", output="todo", fn=lambda ctx: _scan(cfg, ctx),
              doc="fingerprint corpus files; keep only new or changed ones (state.json)"),
        Stage("encode_seeds", "map", input="seed_rows", output="seeds_encoded", operator=EncodeSignatures,
              constructor_kwargs={"model_spec": cfg.model.spec(), **sig, "batch_size": res.encode.batch_size},
              resources=res.encode.resources(), batch_size=res.encode.batch_size),
        Stage("per_file", "driver", output="processed", fn=lambda ctx: _process_files(cfg, ctx),
              doc="for each file: read -> encode -> mine -> write mined/<key>.parquet -> update state"),
        Stage("finish", "driver", output="result", fn=lambda ctx: _finish(cfg, ctx), doc="_SUCCESS"),
    ])


def _file_stages(cfg: MineConfig) -> list[Stage]:
    res = cfg.resources
    sig = {"pooling": cfg.signatures.pooling, "top_n": cfg.signatures.top_n}
    return [
        Stage("encode", "map", input="rows", output="encoded", operator=EncodeSignatures,
              constructor_kwargs={"model_spec": cfg.model.spec(), **sig, "batch_size": res.encode.batch_size},
              resources=res.encode.resources(), batch_size=res.encode.batch_size),
        Stage("mine", "map", input="encoded", output="mined", operator=MineBySignature,
              constructor_kwargs={"seeds": Ref("seed_signatures"), "targets": Ref("target_ids"),
                                  "target_reference": Ref("target_reference"), "background_df": Ref("background_df"),
                                  "background_n": Ref("background_n"), "background": Ref("background_sample"),
                                  "method": cfg.method, "k": cfg.k, "min_score": cfg.min_score,
                                  "drop_below": True},
              resources=res.light.resources(), batch_size=res.light.batch_size,
                  local_below=res.light.local_below),
    ]


def file_key(path: Path) -> str:
    """Stable output name for a corpus file (its resolved path, readable part + short hash)."""
    full = str(path.resolve())
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:80]
    return f"{stem}-{hashlib.sha1(full.encode()).hexdigest()[:10]}"


def _settings_fingerprint(cfg: MineConfig, seeds) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"model": cfg.model.to_dict(), "sig": cfg.signatures.to_dict(), "k": cfg.k,
                         "min_score": cfg.min_score, "n_targets": cfg.n_targets,
                         "method": cfg.method, "background_size": cfg.background_size}, sort_keys=True).encode())
    for i, t in zip(seeds.ids, seeds.texts):
        h.update(i.encode() + b"\0" + t.encode() + b"\0")
    return h.hexdigest()[:16]


def load_state(out: Path) -> dict:
    p = out / STATE
    if not p.exists():
        return {"settings": None, "files": {}}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: corrupt state file ({exc}); delete it to re-mine everything") from None


def _scan(cfg: MineConfig, ctx: dict) -> list[str]:
    out = Path(cfg.out)
    seeds = read_seeds(cfg.seeds, cfg)
    files = list_corpus_files(cfg.corpus)
    ctx["meta"] = signature_meta(cfg.model, cfg.signatures)
    state = load_state(out)
    settings = _settings_fingerprint(cfg, seeds)
    if state.get("settings") != settings:  # new seeds / settings: earlier results are not comparable
        state = {"settings": settings, "files": {}}
        (out / BACKGROUND).unlink(missing_ok=True)
    todo = []
    fps = {}
    for f in files:
        fp = file_fingerprint(f, cfg.hash_files)
        fps[str(f.resolve())] = fp
        old = state["files"].get(str(f.resolve()))
        if old is None or any(old.get(k) != v for k, v in fp.items() if k != "mtime_ns" or not cfg.hash_files):
            todo.append(str(f))
        elif cfg.hash_files and old.get("mtime_ns") != fp["mtime_ns"]:
            old["mtime_ns"] = fp["mtime_ns"]  # touched but identical bytes: nothing to do
    ctx.update(state=state, fingerprints=fps, seeds=seeds, all_files=[str(f) for f in files])
    ctx["seed_rows"] = pa.table({"id": seeds.table["id"], "text": seeds.table["text"]}) if todo else pa.table(
        {"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    return todo


def _background(cfg: MineConfig, ctx: dict, todo: list[str], executor: str) -> dict[str, pa.Table]:
    """IDF + targets: loaded from background.json, or computed (first run) from the files of this run."""
    out, meta = Path(cfg.out), ctx["meta"]
    seeds_enc = ctx["seeds_encoded"]
    ctx["seed_signatures"] = SeedSignatures.from_table(seeds_enc, meta).to_dict()
    bg_path = out / BACKGROUND
    encoded: dict[str, pa.Table] = {}
    if bg_path.exists():
        bg = json.loads(bg_path.read_text())
    else:
        tables = []
        for f in todo:
            recs = read_records(f, cfg.text_column, cfg.id_column, cfg.max_chars, what="corpus")
            sub = execute(Plan("mine-background", cfg, _file_stages(cfg)[:1]),
                          {"rows": recs.table.select(["id", "text"])}, executor)
            tables.append(sub["encoded"])
            encoded[f] = sub["encoded"]
        corpus = pa.concat_tables(tables, promote_options="permissive")
        df, n = background_idf(corpus, meta.d_sae)
        targets = select_targets(seeds_enc, corpus, meta.d_sae, cfg.n_targets) if cfg.n_targets else []
        bg = {"df": df, "n_docs": n, "targets": targets, "built_from": todo,
              "sample": background_sample(corpus, cfg.background_size)}
        json_dump(bg_path, bg)
    ctx["background_df"], ctx["background_n"] = bg["df"], bg["n_docs"]
    ctx["background_sample"] = bg["sample"]
    ctx["target_ids"] = [t["feature"] for t in bg["targets"]]
    ctx["target_reference"] = [t["reference"] for t in bg["targets"]]
    return encoded  # first run: the files were encoded for the background already; not encoded twice


def _process_files(cfg: MineConfig, ctx: dict) -> list[dict]:
    todo = ctx["todo"]
    if not todo:
        return []
    executor = ctx["executor"]
    pre_encoded = _background(cfg, ctx, todo, executor)
    out, state = Path(cfg.out), ctx["state"]
    done = []
    for f in todo:
        path = Path(f)
        recs = read_records(path, cfg.text_column, cfg.id_column, cfg.max_chars, what="corpus")
        fctx = {k: ctx[k] for k in ("seed_signatures", "target_ids", "target_reference", "background_df",
                                     "background_n", "background_sample")}
        fctx["rows"] = recs.table.select(["id", "text"])
        stages = _file_stages(cfg)
        if f in pre_encoded:
            fctx["encoded"], stages = pre_encoded.pop(f), stages[1:]
        fctx = execute(Plan("mine-file", cfg, stages), fctx, executor)
        mined = fctx["mined"].sort_by([("mine_score", "descending"), ("id", "ascending")])
        mined = mined.append_column("source_file", pa.array([str(path)] * mined.num_rows, pa.string()))
        key = file_key(path)
        meta = ctx["meta"]
        target = out / MINED_DIR / f"{key}.parquet"
        write_table_atomic(mined, target, {"pipeline": "mine", "model": meta.model, "sae": meta.sae,
                                           "layer": str(meta.layer), "source_file": str(path)})
        entry = {**ctx["fingerprints"][str(path.resolve())], "rows": len(recs), "mined": mined.num_rows,
                 "output": str(target), "truncated": recs.n_truncated,
                 "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        state["files"][str(path.resolve())] = entry
        json_dump(out / STATE, state)  # after every file: a crash loses at most the file in progress
        done.append({"file": str(path), **{k: entry[k] for k in ("rows", "mined", "output")}})
    return done


def _finish(cfg: MineConfig, ctx: dict) -> dict:
    out = Path(cfg.out)
    json_dump(out / STATE, ctx["state"])
    total = sum(e.get("mined", 0) for e in ctx["state"]["files"].values())
    mark_complete(out, {"files": len(ctx["state"]["files"]), "mined_rows": total})
    return {"processed": ctx["processed"], "skipped": len(ctx["all_files"]) - len(ctx["todo"]),
            "mined_total": total, "out": str(out / MINED_DIR), "state": str(out / STATE)}


def run(plan: Plan, executor: str | None = None, address: str | None = None) -> dict:
    cfg: MineConfig = plan.config
    executor = executor or cfg.executor
    if executor == "ray":
        from qscope.pipelines.runtime import init_ray

        init_ray(address)
    t0 = time.perf_counter()
    (Path(cfg.out) / SUCCESS).unlink(missing_ok=True)
    ctx = execute(plan, {"executor": executor}, executor)
    return {**ctx["result"], "wall_s": round(time.perf_counter() - t0, 1), "timings": ctx["timings"]}


def main(argv: list[str] | None = None) -> int:
    from qscope.pipelines.common import module_main, plan_or_run

    def run_fn(args):
        return plan_or_run(MineConfig, build_plan, run, args)

    return module_main("python -m qscope.pipelines.mine", __doc__, run_fn, argv)


if __name__ == "__main__":
    sys.exit(main())
