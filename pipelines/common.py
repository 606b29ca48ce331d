"""Pieces the pipelines share: the signature meta of a model spec, starting a run, writing small JSON files.

Starting a pipeline from a command line is `qscope.pipelines.launch`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from qscope.signatures import SignatureMeta


def signature_meta(model_cfg, sig_cfg) -> SignatureMeta:
    """What the encoders will write, known on the driver without loading the LM (only the SAE; the model by its
    provenance name: nothing is loaded, converted or downloaded on the driver)."""
    from qscope.models import model_name, resolve_sae_and_model

    chosen = resolve_sae_and_model(model_cfg.sae, model_cfg.model, model_cfg.layer, model_cfg.allow_model_mismatch)
    sae = chosen.sae
    return SignatureMeta(
        model_name(chosen.model),
        sae.sae_id,
        chosen.layer,
        sig_cfg.pooling,
        int(sig_cfg.top_n),
        sae.d_sae,
        sae_hash=sae.weights_hash(),
        max_length=int(model_cfg.max_length),
        hidden_mean=bool(getattr(sig_cfg, "hidden_mean", False)),
    )


def start_run(cfg, executor: str | None = None, address: str | None = None):
    """A `Run` of `cfg` on its executor (Ray is started, or joined, here)."""
    from qscope.pipelines.plan import Run
    from qscope.pipelines.progress import Progress

    executor = executor or cfg.executor
    if executor == "ray":
        from qscope.pipelines.runtime import init_ray

        init_ray(address)
    return Run(cfg, executor, progress=Progress(executor))


def run_plan(plan, executor: str | None, address: str | None, result: Callable) -> dict:
    """Execute `plan` on a `start_run` Run: `result(run)`'s fields, then wall_s, timings and throughput."""
    from qscope.pipelines.plan import execute

    t0 = time.perf_counter()
    r = execute(plan, start_run(plan.config, executor, address))
    return {
        **result(r),
        "wall_s": round(time.perf_counter() - t0, 1),
        "timings": r.timings,
        "throughput": r.progress.stats(),
    }


def json_dump(path: Path, obj) -> Path:
    from qscope.paths import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
    return path
