"""`mine`: scheduled, incremental corpus mining — each run encodes and mines only corpus files that are new or
changed, in one streaming pass (one actor pool, the model loaded once per actor per run).

    python -m qscope.pipelines.mine --config configs/mine.yaml           # e.g. from cron, hourly
    qscope run configs/mine.yaml

Output directory:

    mined/source_key=<file>/*.parquet   the mined rows of each corpus file (id, text, mine_score, ...,
                                        source_file): `pl.read_parquet("<out>/mined/**/*.parquet")`
    corpus_signatures/                  the signature store (encoded once; see `qscope.pipelines.store`)
    state.json                          per corpus file: fingerprint, rows, mined rows, quarantine reason
    _seed_model/, _rejected/, _SUCCESS  the seed model (kept while seeds and settings are), bad rows, completion

A run: (1) compares the seeds + scoring settings with the state — if they changed, every file is mined again
from the store (no re-encoding) and the old results go; (2) encodes new / changed files into the store and forgets
deleted ones; (3) mines the files that need it and replaces their `mined/` partitions; (4) writes the state, then
`_SUCCESS`. Corpus files are keyed by their path relative to the corpus root, so a `ray job submit --working-dir`
upload or another mount point changes nothing. A file that cannot be read is quarantined: left in place,
skipped, reported in the state, the summary and the exit code (3) — it never blocks the files after it.
Idempotent: a rerun with nothing changed encodes and mines nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from qscope.cli import EXIT_PARTIAL
from qscope.errors import InputError
from qscope.operators import MineBySignature, Project
from qscope.pipelines import stages as shared
from qscope.pipelines.common import json_dump
from qscope.pipelines.config import MineConfig, TargetConfig
from qscope.pipelines.flow import Flow, Ref, Step
from qscope.pipelines.outputs import SUCCESS, mark_success, staging_dir
from qscope.pipelines.plan import Plan, Run, Stage
from qscope.pipelines.store import PARTITION
from qscope.seed_model import SeedModel

STATE = "state.json"
MINED_DIR = "mined"
SIGNATURES_DIR = "corpus_signatures"
EXIT_QUARANTINED = EXIT_PARTIAL
MINED_COLUMNS = [
    "id",
    "text",
    "mine_score",
    "seed_similarity",
    "nearest_seed",
    "target_score",
    "target_coverage",
    "n_tokens",
    "truncated",
    "source_file",
    PARTITION,
]


def build_plan(cfg: MineConfig) -> Plan:
    out = Path(cfg.out)
    light = cfg.resources.light
    mine = Step(
        MineBySignature,
        {"seed_model": Ref("seed_model"), "min_score": cfg.min_score, "drop_below": True},
        light.actor_resources(),
        light.batch_size,
    )
    project = Step(Project, {"columns": MINED_COLUMNS}, light.actor_resources(), light.batch_size)
    stages = shared.head(cfg, out, out / SIGNATURES_DIR, with_seed_encoding=False)
    fit = shared.seed_model_stage(cfg, cfg, cfg.targets)
    encode = shared.encode_step(cfg)
    stages += [
        Stage(
            "seed_model",
            "flow",
            ("seeds", "signatures"),
            {"seed_model": "SeedModel", "state": "dict", "reset": "bool"},
            lambda run: _seed_model(run, fit, encode),
            [encode, *fit.steps],
            doc="kept from the first run while seeds + settings are unchanged (same scale); else the seeds are "
            "encoded, the model refit and every file mined again",
        ),
        Stage(
            "mine",
            "flow",
            ("signatures", "seed_model", "state"),
            {"mined_files": "list"},
            lambda run: {"mined_files": _mine(run, mine, project)},
            [mine, project],
            doc=f"new / changed files only -> {MINED_DIR}/{PARTITION}=<file>/ (rows with mine_score >= "
            f"{cfg.min_score})",
        ),
        Stage(
            "finish",
            "driver",
            ("mined_files", "state"),
            {"result": "dict"},
            lambda run: {"result": _finish(run)},
            doc=f"{STATE}, then {SUCCESS}",
        ),
    ]
    return Plan("mine", cfg, stages)


def _settings_fingerprint(cfg: MineConfig, seeds, meta) -> str:
    h = hashlib.sha256()
    t = cfg.targets
    settings = {
        "meta": meta.__dict__,
        "k": cfg.k,
        "min_score": cfg.min_score,
        "n_targets": t.n_features,
        "method": cfg.method,
        "background_size": cfg.background_size,
    }
    unset = TargetConfig()
    if (t.method, t.min_seed_fraction, t.features) != (unset.method, unset.min_seed_fraction, unset.features):
        # only when set: a state written before mine read these settings stays valid at their defaults
        settings["targets"] = {"method": t.method, "min_seed_fraction": t.min_seed_fraction, "features": t.features}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
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
        raise InputError(f"{p}: corrupt state file ({exc}); delete it to mine everything again") from None


def _seed_model(run: Run, fit: Stage, encode: Step) -> dict:
    cfg: MineConfig = run.config
    out = Path(cfg.out)
    state = load_state(out)
    settings = _settings_fingerprint(cfg, run["seeds"], run["meta"])
    saved = out / shared.SEED_MODEL
    if state.get("settings") == settings and saved.exists():
        return {"seed_model": SeedModel.load(saved), "state": state, "reset": False}
    # New seeds / settings: earlier scores are not comparable; results go, the store (signatures) stays.
    shutil.rmtree(out / MINED_DIR, ignore_errors=True)
    state = {"settings": settings, "files": {}}
    json_dump(out / STATE, state)
    run.values["seed_signatures"] = shared.encode_seeds(run, encode)
    return {**fit.fn(run), "state": state, "reset": True}


def _mine(run: Run, mine: Step, project: Step) -> list[str]:
    cfg: MineConfig = run.config
    out, state, sigs = Path(cfg.out), run["state"], run["signatures"]
    store = sigs.store
    for key in [k for k in state["files"] if k not in sigs.keys]:  # deleted corpus files: their results go
        shutil.rmtree(out / MINED_DIR / f"{PARTITION}={state['files'].pop(key)['partition']}", ignore_errors=True)
    todo = [k for k in sigs.keys if _needs_mining(state["files"].get(k), store.files.get(k))]
    if todo:
        n = sum(store.files[k].rows - store.files[k].rejected for k in todo)
        staged = staging_dir(out, run.run_id, "mined")
        columns = ["id", "text", "n_tokens", "truncated", "source_file", PARTITION, "feature_ids", "feature_values"]
        flow = Flow(store.read(todo, columns), [mine.resolve(run), project], "mine")
        executor = "local" if n < cfg.resources.light.local_below else run.executor
        with run.progress.stage("mine", total=n):
            flow.write_parquet(staged, executor, run.counter, partition_col=PARTITION)
        _commit(out, staged, todo, store, state)
    json_dump(out / STATE, state)
    return todo


def _needs_mining(done: dict | None, entry) -> bool:
    """A file is mined again when the store holds another encoding of it than the one mined last. `encoded_at`
    has one-second resolution and several runs can fall in one second: the encoding run's id decides too (a state
    written before it was recorded falls back to the time alone)."""
    if entry is None:
        return False
    if done is None:
        return True
    return done.get("encoded_at") != entry.encoded_at or done.get("encoded_run", entry.run_id) != entry.run_id


def _commit(out: Path, staged: Path, todo: list[str], store, state: dict) -> None:
    import pyarrow.parquet as pq

    mined_dir = out / MINED_DIR
    mined_dir.mkdir(parents=True, exist_ok=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key in todo:
        entry = store.files[key]
        new, final = staged / f"{PARTITION}={entry.partition}", mined_dir / f"{PARTITION}={entry.partition}"
        shutil.rmtree(final, ignore_errors=True)
        mined = 0
        if new.exists():
            mined = sum(pq.ParquetFile(p).metadata.num_rows for p in new.rglob("*.parquet"))
            new.rename(final)
        state["files"][key] = {
            "partition": entry.partition,
            "fingerprint": entry.fingerprint,
            "rows": entry.rows,
            "rejected": entry.rejected,
            "mined": mined,
            "quarantined": entry.quarantined,
            "encoded_at": entry.encoded_at,
            "encoded_run": entry.run_id,
            "completed_at": now,
        }


def _finish(run: Run) -> dict:
    cfg: MineConfig = run.config
    out, state = Path(cfg.out), run["state"]
    sigs = run["signatures"]
    t = sigs.totals()
    done = run["mined_files"]
    total = sum(e.get("mined", 0) for e in state["files"].values())
    mark_success(
        out,
        run.run_id,
        {
            "pipeline": "mine",
            "files": len(state["files"]),
            "mined_rows": total,
            "quarantined": sorted(t["quarantined"]),
        },
    )
    return {
        "processed": [
            {
                "file": k,
                "rows": state["files"][k]["rows"],
                "mined": state["files"][k]["mined"],
                "output": str(out / MINED_DIR / f"{PARTITION}={state['files'][k]['partition']}"),
            }
            for k in done
        ],
        "skipped": len(sigs.keys) - len(done),
        "reset": run["reset"],
        "mined_total": total,
        "files_encoded": t["files_encoded"],
        "rejected": t["rejected"],
        "quarantined": t["quarantined"],
        "out": str(out / MINED_DIR),
        "state": str(out / STATE),
        "run_id": run.run_id,
    }


def run(plan: Plan, executor: str | None = None, address: str | None = None) -> dict:
    from qscope.pipelines.common import run_plan

    return run_plan(plan, executor, address, lambda r: r["result"])


def exit_code(result: dict | None) -> int:
    """0, or EXIT_QUARANTINED when a corpus file could not be read (the rest was mined)."""
    return EXIT_QUARANTINED if result and result.get("quarantined") else 0


def main(argv: list[str] | None = None) -> int:
    from qscope.pipelines.launch import module_main

    return module_main("mine", argv)


if __name__ == "__main__":
    sys.exit(main())
