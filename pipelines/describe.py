"""Name the run's target features for the review report: a label (with its held-out quality score) per feature
and a dashboard of its top-activating examples, written beside the report.

Labelling runs the LM over a few dozen texts, so it runs where models run: in a Ray task with the encode stage's
resources (its GPU when it has one) — the driver never loads a model — or in-process with `--executor local`.
What comes back to the driver is small: one `FeatureNote` per feature.
"""

from __future__ import annotations

from pathlib import Path

from qscope.pipelines.plan import Run, Stage

NOTES_FILE = "_feature_notes.json"
MAX_TEXTS = 200
"""Seeds and mined rows the labels are built and scored from (half each: a label never grades itself)."""


def describe_stage(cfg, reads: tuple[str, ...] = ("seeds", "seed_model")) -> Stage:
    def fn(run: Run) -> dict:
        model = run["seed_model"]
        features = [int(t["feature"]) for t in model.targets]
        texts = label_texts(run)
        if not features or len(texts) < 4:
            return {"feature_notes": {}}
        report_dir = Path(cfg.out)
        notes = _on_worker(run, cfg, features, texts, report_dir)
        from qscope.report import save_notes

        save_notes(notes, report_dir / NOTES_FILE)
        return {"feature_notes": notes}

    return Stage(
        "describe_features",
        "worker",
        reads,
        {"feature_notes": "{feature: FeatureNote} (small)"},
        fn,
        doc=f"labels + dashboards of the target features from <= {MAX_TEXTS} seed and mined texts, in a "
        "worker with the encode resources",
    )


def label_texts(run: Run) -> list[str]:
    """The seeds, then the mined rows (real text in the niche, best first), at most MAX_TEXTS."""
    texts = list(run["seeds"].texts)
    mined = run.get("mined")
    if mined is not None and mined.num_rows:
        texts += [t for t in mined.column("text").to_pylist() if t]
    return texts[:MAX_TEXTS]


def _on_worker(run: Run, cfg, features: list[int], texts: list[str], report_dir: Path) -> dict:
    spec = cfg.model.to_dict()
    if run.executor != "ray":
        return describe(spec, features, texts, str(report_dir))
    import ray

    res = cfg.resources.encode
    task = ray.remote(describe).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_retries=res.retries)
    return ray.get(task.remote(spec, features, texts, str(report_dir)))


def describe(spec, features: list[int], texts: list[str], report_dir: str) -> dict:
    """Load the model (whole: labels read the unembedding) and label `features`; dashboards go to
    `report_dir/dashboards/`."""
    from qscope.operators.base import ModelSpec, load_model_and_sae
    from qscope.report import describe_features

    spec = ModelSpec.coerce(spec)
    lm, sae, layer = load_model_and_sae(spec)
    return describe_features(
        lm, sae, features, texts, layer=layer, report_dir=report_dir, max_length=min(128, spec.max_length or 128)
    )
