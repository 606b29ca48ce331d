"""The stages every corpus pipeline shares, built once: claim the output, read + encode the seeds, encode the corpus
into its signature store (only new / changed files), and fit the `SeedModel` on a bounded corpus sample.

    stages = shared.head(cfg, out_dir)                # claim_output, read_seeds, encode_seeds, encode_corpus
    stages += [shared.seed_model_stage(cfg, cfg)]     # then the pipeline's own stages read `signatures`, `seed_model`

Values they produce: `output` (the claimed directory), `seeds` (`Records`), `meta` (`SignatureMeta`),
`seed_signatures` (a small Table), `signatures` (a `CorpusSignatures`: the open store + this corpus's files),
`seed_model` (`SeedModel`, saved to `<output>/_seed_model`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from qscope.errors import InputError
from qscope.operators import EncodeSignatures, SampleByHash
from qscope.operators.select import smallest_keys
from qscope.pipelines.flow import CorpusInput, Flow, Step, TableInput
from qscope.pipelines.outputs import RunLock, clear_stale_staging, replace_dir, staging_dir
from qscope.pipelines.plan import Run, Stage
from qscope.pipelines.sources import resolve_corpus
from qscope.pipelines.store import SignatureStore
from qscope.seed_model import SeedModel

log = logging.getLogger(__name__)

REJECTED = "_rejected"
SEED_MODEL = "_seed_model"
SAMPLE_MARGIN = 1.3
"""Oversampling of the hash threshold, so the bottom-k sample almost surely has k rows."""


class BadRowsError(InputError):
    """More of the corpus was rejected than `max_bad_fraction` allows."""


@dataclass
class CorpusSignatures:
    """This run's corpus in the signature store: the store (locked for the run) and the corpus's file keys."""

    store: SignatureStore
    keys: list[str]
    encoded: int
    """Files encoded by this run (the rest were reused)."""

    def read(self, columns=None, rows: str = "good"):
        return self.store.read(self.keys, columns, rows)

    def totals(self) -> dict:
        return {
            **self.store.totals(self.keys),
            "files_encoded": self.encoded,
            "files_reused": len(self.keys) - self.encoded,
        }


def encode_step(cfg) -> Step:
    res = cfg.resources.encode
    return Step(
        EncodeSignatures,
        {
            "model_spec": cfg.model.to_dict(),
            "pooling": cfg.signatures.pooling,
            "top_n": cfg.signatures.top_n,
            "batch_size": res.batch_size,
            "hidden_mean": bool(cfg.signatures.hidden_mean),
        },
        res.actor_resources(),
        res.batch_size,
    )


def head(
    cfg,
    output_dir: str | Path,
    store_dir: str | Path,
    label_column: str | None = None,
    max_rows: int | None = None,
    with_seed_encoding: bool = True,
    check_result=None,
) -> list[Stage]:
    """claim_output → read_seeds → encode_seeds → encode_corpus (encode_seeds left to the caller when
    `with_seed_encoding` is False: mine skips it while its saved seed model holds)."""
    output_dir, store_dir = Path(output_dir), Path(cfg.corpus_signatures or store_dir)
    step = encode_step(cfg)
    stages = [
        Stage(
            "claim_output",
            "driver",
            (),
            {"output": f"locked dir {output_dir}"},
            lambda run: {"output": _claim(run, output_dir, check_result)},
            doc="a second run on this output is refused; a dead run's lock is taken over",
        ),
        Stage(
            "read_seeds",
            "driver",
            ("config.seeds",),
            {"seeds": "Records", "meta": "SignatureMeta"},
            lambda run: _read_seeds(run, label_column),
            doc="strict: any bad seed row is an error",
        ),
        Stage(
            "encode_seeds",
            "flow",
            ("seeds",),
            {"seed_signatures": "Table (small)"},
            lambda run: {"seed_signatures": encode_seeds(run, step, label_column)},
            [step],
        ),
        Stage(
            "encode_corpus",
            "flow",
            ("meta", "output"),
            {"signatures": f"signature store {store_dir}"},
            lambda run: {"signatures": _encode_corpus(run, step, store_dir, max_rows)},
            [step],
            doc="only new / changed corpus files; bad rows -> _rejected/",
        ),
    ]
    return stages if with_seed_encoding else [s for s in stages if s.name != "encode_seeds"]


def _claim(run: Run, output_dir: Path, check_result=None) -> Path:
    if check_result is not None:  # a result path we could not write is an error now, not after the encoding
        check_result()
    lock = RunLock(output_dir, run.run_id)
    lock.acquire()
    run.cleanup.append(lock.release)
    clear_stale_staging(output_dir)  # parts of runs that died: nobody else writes here while we hold the lock
    run.cleanup.append(lambda: clear_stale_staging(output_dir))
    return output_dir


def _read_seeds(run: Run, label_column: str | None) -> dict:
    from qscope.io import read_records
    from qscope.pipelines.common import signature_meta

    cfg = run.config
    if not cfg.seeds:
        raise InputError("no seed file given (config `seeds:` or --seeds)")
    seeds = read_records(cfg.seeds, cfg.text_column, cfg.id_column, cfg.max_chars, what="seeds")
    if label_column and label_column not in seeds.table.column_names:
        label_column = None
    return {"seeds": seeds, "meta": signature_meta(cfg.model, cfg.signatures)}  # a bad SAE fails before any work


def encode_seeds(run: Run, step: Step, label_column: str | None = None) -> pa.Table:
    """The seeds' signatures, in seed-file order (a small flow: one actor pool, or in-process)."""
    seeds = run["seeds"]
    cols = {"id": seeds.table["id"], "text": seeds.table["text"]}
    if label_column and label_column in seeds.table.column_names:
        cols["label"] = pa.array(
            [None if x is None else str(x) for x in seeds.table[label_column].to_pylist()], pa.string()
        )
    table = pa.table(cols)
    blocks = max(1, step.resources.concurrency)
    with run.progress.stage("encode_seeds", total=table.num_rows):
        out = list(Flow(TableInput(table, blocks), [step], "encode_seeds").iter_tables(run.executor, run.counter))
    enc = pa.concat_tables(out, promote_options="permissive")
    order = {i: n for n, i in enumerate(seeds.ids)}  # Ray may reorder blocks
    return enc.take(pa.array(sorted(range(enc.num_rows), key=lambda r: order[enc["id"][r].as_py()]), pa.int64()))


def _encode_corpus(run: Run, step: Step, store_dir: Path, max_rows: int | None) -> CorpusSignatures:
    cfg = run.config
    source = resolve_corpus(cfg.corpus, cfg.text_column, cfg.id_column, cfg.max_chars)
    store = SignatureStore.open(store_dir, run["meta"], run.run_id, reencode=cfg.reencode)
    run.cleanup.append(store.close)
    plan = store.plan(source, cfg.hash_files)
    if max_rows is not None:  # a partial read: nothing is reused, nothing partial is trusted next time
        plan.encode, plan.reuse = list(source.files), []
    todo = source.subset(f.key for f in plan.encode)
    log.info(
        "corpus %s: %d file(s) to encode, %d reused, %d gone",
        source.spec,
        len(plan.encode),
        len(plan.reuse),
        len(plan.remove),
    )
    staged = store.staging()
    if plan.encode:
        flow = Flow(CorpusInput(todo, max_rows), [step], "encode_corpus")
        with run.progress.stage("encode_corpus", total=todo.total_rows() if max_rows is None else max_rows):
            flow.write_parquet(staged, run.executor, run.counter, partition_col="source_key")
    store.commit(plan, source, staged, cfg.hash_files, partial=max_rows is not None)
    sigs = CorpusSignatures(store, [f.key for f in source.files], len(plan.encode))
    _publish_rejected(run, sigs)
    return sigs


def _publish_rejected(run: Run, sigs: CorpusSignatures) -> None:
    """Write `<output>/_rejected/` (id, source_file, row, reject_reason, text snippet); fail past max_bad_fraction."""
    cfg, out = run.config, Path(run["output"])
    t = sigs.totals()
    final = out / REJECTED
    if t["rejected"]:
        staged = staging_dir(out, run.run_id, "rejected")
        flow = Flow(sigs.read(["id", "source_file", "row", "reject_reason", "text"], rows="rejected"), [], "rejected")
        flow.write_parquet(staged, run.executor)
        replace_dir(staged, final, run.run_id)
    elif final.exists():
        import shutil

        shutil.rmtree(final)
    for key, why in t["quarantined"].items():
        log.warning("corpus file %s quarantined (left in place, skipped): %s", key, why)
    if t["rows"] and t["bad"] > cfg.max_bad_fraction * t["rows"]:
        raise BadRowsError(
            f"{t['bad']:,} of {t['rows']:,} corpus rows ({t['bad'] / t['rows']:.2%}) are bad, more than "
            f"max_bad_fraction {cfg.max_bad_fraction:.2%}: see {final} (reason per row); fix the corpus or raise "
            "max_bad_fraction"
        )


def seed_model_stage(cfg, fit, targets=None, *, label_column: str | None = None) -> Stage:
    """Sample `fit.background_size` corpus signatures (bottom-k by id hash: uniform, deterministic, streamed), fit
    the SeedModel with `fit.method` / `fit.k` (and target features as `targets`, a `TargetConfig`, asks), save it to
    `<output>/_seed_model`. With `fit.read_text` (probe) the sample keeps its rows' `text`, so the probe reads a
    TF-IDF view too."""
    background_size = fit.background_size
    text = fit.method == "probe" and fit.read_text
    target_kwargs = targets.seed_model_kwargs() if targets is not None else {}
    step = Step(SampleByHash, {"fraction": "<from the store's row count>"}, cfg.resources.light.actor_resources(), 4096)

    def fn(run: Run) -> dict:
        sigs: CorpusSignatures = run["signatures"]
        n = sigs.totals()["good"]
        if n == 0:
            raise InputError(f"corpus {cfg.corpus}: no row could be encoded (see {run['output']}/{REJECTED})")
        fraction = min(1.0, SAMPLE_MARGIN * background_size / n)
        sample_step = Step(SampleByHash, {"fraction": fraction}, step.resources, step.batch_size)
        columns = ["id", "feature_ids", "feature_values"] + (["hidden_mean"] if run["meta"].hidden_mean else [])
        columns += ["text"] if text else []
        flow = Flow(sigs.read(columns), [sample_step], "sample_background")
        background = smallest_keys(list(flow.iter_tables(run.executor)), background_size)
        if text and "text" in background.column_names and background.column("text").null_count:
            raise InputError(
                f"{background.column('text').null_count} background rows have no text in the signature store"
            )
        model = SeedModel.fit(
            run["seed_signatures"],
            background,
            run["meta"],
            method=fit.method,
            k=fit.k,
            label_column=label_column,
            **target_kwargs,
        )
        model.save(Path(run["output"]) / SEED_MODEL)
        return {"seed_model": model}

    return Stage(
        "seed_model",
        "driver",
        ("seed_signatures", "signatures"),
        {"seed_model": "SeedModel"},
        fn,
        [step],
        doc=f"{background_size} background rows sampled from the store; saved to _seed_model/",
    )
