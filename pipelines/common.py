"""Pieces the pipelines share: reading inputs, the signature meta of a model spec, target selection, CLI glue."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pyarrow as pa

from qscope.errors import InputError, QscopeError
from qscope.io import Records, list_corpus_files, read_records
from qscope.signatures import SignatureMeta

log = logging.getLogger(__name__)


def signature_meta(model_cfg, sig_cfg) -> SignatureMeta:
    """What the encoders will write, known on the driver without loading the LM (only the SAE)."""
    from qscope.models.resolve import DEFAULT_MODEL, EMBEDDED_MODELS, resolve_model_dir
    from qscope.sae import load_sae

    sae = load_sae(model_cfg.sae, layer=model_cfg.layer)
    model = model_cfg.model
    if model is None:
        model = sae.cfg.model_name if sae.cfg.model_name in EMBEDDED_MODELS else DEFAULT_MODEL
    name = model if model in EMBEDDED_MODELS else resolve_model_dir(model)[1]
    layer = model_cfg.layer if model_cfg.layer is not None else sae.cfg.hook_layer
    if layer is None:
        raise InputError(f"SAE {sae.sae_id} does not record its layer; set model.layer in the config")
    return SignatureMeta(name, sae.sae_id, int(layer), sig_cfg.pooling, int(sig_cfg.top_n), sae.d_sae)


def read_seeds(path, cfg) -> Records:
    if not path:
        raise InputError("no seed file given (config `seeds:` or --seeds)")
    return read_records(path, cfg.text_column, cfg.id_column, cfg.max_chars, what="seeds")


def read_corpus(spec, cfg, max_rows: int | None = None) -> Records:
    if not spec:
        raise InputError("no corpus given (config `corpus:` or --corpus)")
    recs = read_records(list_corpus_files(spec), cfg.text_column, cfg.id_column, cfg.max_chars, what="corpus")
    if max_rows is not None and len(recs) > max_rows:
        recs.table = recs.table.slice(0, max_rows)
    return recs


def signature_csr(table: pa.Table, d_sae: int):
    from qscope.index import as_ragged
    from qscope.index.ragged import to_csr

    return to_csr(as_ragged(table.column("feature_ids"), table.column("feature_values"), d_sae), d_sae)


def select_targets(seeds: pa.Table, background: pa.Table, d_sae: int, n: int, method: str = "logodds",
                   min_seed_fraction: float = 0.25, fixed: list[int] | None = None) -> list[dict]:
    """Contrastive target features (`qscope.targets.select_target_features`): present in many seeds, rarer in the
    corpus background. Returns [{feature, score, frac_seeds, frac_background, reference, background_mean}] where
    `reference` is the feature's mean pooled activation on the seeds that contain it (the level scores are
    measured against)."""
    from qscope.targets import select_target_features

    args = (seeds.column("feature_ids"), seeds.column("feature_values"), background.column("feature_ids"),
            background.column("feature_values"), d_sae)
    if fixed:
        ranked = {t.feature_id: t for t in select_target_features(*args, top_k=d_sae, min_seed_coverage=0.0,
                                                                 method=method)}
        chosen = [(int(f), ranked.get(int(f))) for f in fixed]
    else:
        chosen = [(t.feature_id, t) for t in select_target_features(*args, top_k=n, min_seed_coverage=min_seed_fraction,
                                                                   method=method)]
    out = []
    for f, t in chosen:
        out.append({
            "feature": int(f),
            "score": None if t is None else round(float(t.score), 4),
            "frac_seeds": 0.0 if t is None else round(float(t.seed_coverage), 4),
            "frac_background": 0.0 if t is None else round(float(t.background_coverage), 4),
            "reference": 1.0 if t is None or t.seed_mean <= 0 else float(t.seed_mean),
            "background_mean": 0.0 if t is None else float(t.background_mean),
        })
    return out


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="pipeline YAML (see configs/)")
    p.add_argument("--seeds", default=None, help="seed file (overrides the config)")
    p.add_argument("--corpus", default=None, help="corpus file / directory (overrides the config)")
    p.add_argument("--out", default=None, help="output directory (overrides the config)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else embedded Ray)")
    p.add_argument("--executor", choices=["ray", "local"], default=None, help="override the config's executor")
    p.add_argument("--plan", action="store_true", help="print the plan and exit without running")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true")


def plan_or_run(config_cls, build_plan, run, args):
    """`--plan`: print the plan and stop; else run it. The config comes from `--config`, with `--seeds/--corpus/
    --out/--executor` overriding its fields (the run function of the classify and mine entry points)."""
    cfg = config_cls.from_yaml(args.config)
    for k in ("seeds", "corpus", "out", "executor"):
        if getattr(args, k, None):
            setattr(cfg, k, getattr(args, k))
    plan = build_plan(cfg)
    if args.plan:
        print(plan.describe())
        return None
    return run(plan, address=args.address)


def module_main(prog: str, doc: str, run_fn, argv: list[str] | None) -> int:
    """`python -m qscope.pipelines.X`: the shared flags (`add_common_args`), then `run_main(run_fn, args)`."""
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])
    add_common_args(p)
    return run_main(run_fn, p.parse_args(argv))


def run_main(run_fn, args) -> int:
    """Shared `python -m qscope.pipelines.X` wrapper: clear one-line errors, JSON or human summary."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        result = run_fn(args)
    except QscopeError as exc:
        if args.json:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        else:
            print(f"qscope: error: {exc}", file=sys.stderr)
        return 2
    if result is None:
        return 0
    if args.json:
        print(json.dumps(result, default=str))
    else:
        for k, v in result.items():
            if k not in ("timings",):
                print(f"{k}: {v}")
    return 0


def json_dump(path: Path, obj) -> Path:
    from qscope.paths import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
    return path
