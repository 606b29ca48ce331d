"""Static HTML dashboards: one page per feature, an index, and a prompt-centric view of one text.

`feature_data` gathers everything a feature page shows (also what the Neuronpedia export writes) from a
`CorpusActivations` sample and a `FeatureLabeler`; the renderers only format it. Pages are self-contained
(inline CSS, SVG histograms, a few lines of JS), so they open from disk and in headless browsers offline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qscope.analysis import templates
from qscope.paths import atomic_path

LABEL_FIELDS = {"label": "text", "label_score": "score", "lm_label": "lm_text", "lm_label_score": "lm_score"}
"""A feature page's label keys and the `FeatureLabel` attribute each is read from (besides promoted / suppressed)."""


def _env():
    import jinja2

    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def _tok(s: str) -> dict:
    # A newline token shows a visible marker and then breaks the line (the container keeps whitespace).
    return {"s": s, "nl": "\n" in s}


def _example(ctx, kind: str) -> dict:
    return {
        "kind": kind,
        "max_value": float(ctx.value),
        "max_index": int(ctx.position),
        "doc": int(ctx.doc),
        "toks": [{**_tok(t), "v": float(v)} for t, v in zip(ctx.tokens, ctx.values)],
        "tokens": list(ctx.tokens),
        "values": [float(v) for v in ctx.values],
    }


def feature_data(
    feature: int,
    acts,
    labeler=None,
    *,
    model: str = "",
    n_top: int = 12,
    n_bins: int = 4,
    per_bin: int = 3,
    lm_label: bool = False,
    stats: dict | None = None,
) -> dict:
    """Everything known about one feature, as plain JSON-able data."""
    from qscope.analysis.labels import logit_effects

    f = acts.check_feature(feature)
    rows, vals = acts.feature_tokens(f)
    d = {
        "feature": f,
        "sae": acts.sae_id,
        "layer": acts.layer,
        "model": model,
        "n_docs": acts.n_docs,
        "n_tokens": acts.n_tokens,
        "density": float(len(rows) / max(acts.n_tokens, 1)),
        "max_activation": float(vals.max()) if len(vals) else 0.0,
        "stats_source": "sample",
        "top": [_example(c, "top") for c in acts.top_contexts(f, n_top)],
        "quantiles": [
            {"lo": lo, "hi": hi, "examples": [_example(c, "quantile") for c in ctxs]}
            for lo, hi, ctxs in acts.quantile_contexts(f, n_bins, per_bin)
        ],
    }
    heights, centres = acts.histogram(f)
    d["histogram"] = {"heights": heights, "values": centres}
    d["sample_density"], d["sample_max_activation"], d["quantile_stats"] = d["density"], d["max_activation"], {}
    if stats:  # corpus-wide statistics (qscope.evaluation feature stats) beat a small sample's
        d.update({k: stats[k] for k in ("density", "max_activation", "quantile_stats") if k in stats})
        d["stats_source"] = stats.get("source", "feature statistics")
    d["label"], d["label_score"], d["lm_label"] = f"feature {f}", None, None
    d["promoted"], d["suppressed"], d["logits_histogram"] = [], [], {"heights": [], "values": []}
    if labeler is not None:
        lab = labeler.lm_label(f) if lm_label else labeler.label(f)
        d.update(
            {key: getattr(lab, name) for key, name in LABEL_FIELDS.items()},
            promoted=lab.promoted,
            suppressed=lab.suppressed,
        )
        effects = logit_effects(labeler.lm, labeler.sae, [f])[0].numpy()
        counts, edges = np.histogram(effects, bins=30)
        d["logits_histogram"] = {
            "heights": [int(c) for c in counts],
            "values": [round(float(x), 4) for x in (edges[:-1] + edges[1:]) / 2],
        }
    return d


def render_feature_page(d: dict) -> str:
    return _env().from_string(templates.FEATURE_PAGE).render(d=d, css=templates.BASE_CSS)


def render_index(features: Sequence[dict], sae: str, layer: int, model: str, sweep: bool = False) -> str:
    return (
        _env()
        .from_string(templates.INDEX_PAGE)
        .render(features=features, sae=sae, layer=layer, model=model, sweep=sweep, css=templates.BASE_CSS)
    )


def _write(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def stats_of(feature_stats, feature: int) -> dict | None:
    """One feature's corpus-wide numbers from a `qscope.evaluation.FeatureStats` (None if not given)."""
    if feature_stats is None:
        return None
    f = int(feature)
    return {
        "density": float(feature_stats.density[f]),
        "max_activation": float(feature_stats.max_activation[f]),
        "quantile_stats": {
            f"q{round(q * 100)}": round(float(v), 4)
            for q, v in zip(feature_stats.quantile_levels, feature_stats.quantiles[f])
        },
        "source": f"feature statistics over {feature_stats.n_tokens} tokens",
    }


def write_dashboards(
    features: Sequence[int],
    acts,
    labeler=None,
    out_dir: str | Path = "dashboards",
    *,
    model: str = "",
    neuronpedia: bool = True,
    lm_label: bool = False,
    feature_stats=None,
    **kw,
) -> dict:
    """Write `feature-<id>.html` per feature, `index.html`, and (default) `neuronpedia/<id>.json` into out_dir.

    `feature_stats` (a `qscope.evaluation.FeatureStats` of this SAE) supplies corpus-wide density, max and
    quantiles; without it they come from the sample in `acts`.
    """
    from qscope.analysis.neuronpedia import to_neuronpedia

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datas, written = [], []
    for f in features:
        d = feature_data(f, acts, labeler, model=model, lm_label=lm_label, stats=stats_of(feature_stats, f), **kw)
        datas.append(d)
        written.append(_write(out / f"feature-{d['feature']}.html", render_feature_page(d)))
        if neuronpedia:
            written.append(
                _write(
                    out / "neuronpedia" / f"{d['feature']}.json",
                    json.dumps(to_neuronpedia(d), ensure_ascii=False, indent=1),
                )
            )
    written.append(_write(out / "index.html", render_index(datas, acts.sae_id, acts.layer, model)))
    return {"out": str(out), "files": [str(p) for p in written], "features": datas}


# --- prompt-centric view -------------------------------------------------------------------------------------
def prompt_data(doc, labels: dict[int, str] | None = None, top: int = 20, model: str = "", sae: str = "") -> dict:
    """Features of one text (a `DocumentFeatures`), per token and pooled, for the inspect page."""
    labels = labels or {}
    ids, values = doc.signature("max", top)
    per_feature: dict[str, dict[int, float]] = {}
    counts: dict[int, int] = {}
    tokens = []
    for i, (s, idx, val) in enumerate(zip(doc.tokens, doc.token_indices, doc.token_values)):
        for f, v in zip(idx, val):
            per_feature.setdefault(str(int(f)), {})[i] = round(float(v), 4)
            counts[int(f)] = counts.get(int(f), 0) + 1
        tokens.append(
            {
                **_tok(s),
                "raw": s,
                "features": [
                    {"id": int(f), "value": float(v), "label": labels.get(int(f), "")} for f, v in zip(idx[:8], val[:8])
                ],
            }
        )
    shown = {str(int(f)) for f in ids}
    return {
        "text": doc.text,
        "layer": doc.layer,
        "model": model,
        "sae": sae,
        "tokens": tokens,
        "features": [
            {"id": int(f), "value": float(v), "n_tokens": counts.get(int(f), 0), "label": labels.get(int(f), "")}
            for f, v in zip(ids, values)
        ],
        "per_feature": {k: v for k, v in per_feature.items() if k in shown},
    }


def render_prompt_page(d: dict) -> str:
    return _env().from_string(templates.PROMPT_PAGE).render(d=d, css=templates.BASE_CSS)


def write_prompt_page(d: dict, path: str | Path) -> Path:
    return _write(Path(path), render_prompt_page(d))
