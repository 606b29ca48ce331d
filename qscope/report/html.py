"""`write_report`: a static, self-contained HTML review page for an expand run (jinja2 + matplotlib)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qscope.paths import atomic_path
from qscope.report import plots
from qscope.report.features import FeatureNote, resolve_notes
from qscope.report.schema import FILE_METADATA, OUTPUT_COLUMNS

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qscope review: {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0}
td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top}
th{background:#f4f4f4}
.tok{white-space:pre-wrap;line-height:1.6}
.src-synthesized{color:#b35900}.src-mined{color:#2d7a3e}.src-seed{color:#2c4f8a}
.small{font-size:12px;color:#666}
code{background:#f4f4f4;padding:0 3px}
.feat{white-space:nowrap}.feat .lab{color:#555}
</style></head><body>
{% macro feat(n) -%}
<span class="feat">{% if n.dashboard %}<a href="{{ n.dashboard }}">{{ n.feature }}</a>{% else %}{{ n.feature }}{% endif %}
{%- if n.label %} <span class="lab">{{ n.label }}</span>{% endif %}</span>
{%- endmacro %}
<h1>qscope review: {{ title }}</h1>
<p class="small">run {{ run_id }} · model <code>{{ model }}</code> · SAE <code>{{ sae }}</code> (layer {{ layer }}) ·
Parquet <code>{{ parquet }}</code></p>
<h2>Summary</h2>
<table>{% for k, v in counts.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
<h2>Target features</h2>
<p>Chosen contrastively: latents whose pooled activation separates the seeds from the corpus background.
Coverage = fraction of texts on which the feature fires.{% if labelled %} Label: tokens the feature fires on → tokens
it promotes; label quality: balanced accuracy of "fires where a label word appears" on held-out tokens (0.5 = chance;
context features score low even with an apt label).{% endif %}{% if linked %} The feature id links to its
dashboard.{% endif %}</p>
<table><tr><th>feature</th><th>label</th><th>label quality</th><th>contrast score</th><th>in seed signatures</th>
<th>in background signatures</th>
<th>reference act.</th>{% for g in groups %}<th>coverage: {{ g }}</th>{% endfor %}<th>steered samples</th></tr>
{% for t in targets %}<tr><td>{% if t.note.dashboard %}<a href="{{ t.note.dashboard }}">{{ t.feature }}</a>{% else %}{{ t.feature }}{% endif %}</td>
<td>{{ t.note.label }}</td><td>{% if t.note.quality is not none %}{{ "%.2f"|format(t.note.quality) }}{% endif %}</td><td>{{ t.score }}</td>
<td>{{ t.frac_seeds }}</td><td>{{ t.frac_background }}</td><td>{{ "%.3f"|format(t.reference) }}</td>
{% for g in groups %}<td>{{ "%.2f"|format(t.coverage[g]) }}</td>{% endfor %}<td>{{ t.steered }}</td></tr>{% endfor %}
</table>
{% if coverage_png %}<img src="{{ coverage_png }}" alt="target feature coverage">{% endif %}
<h2>Score distributions</h2>
<p>Seeds are scored the same way as outputs, for comparison. Outputs shown after filtering and dedup.</p>
{% if hist_png %}<img src="{{ hist_png }}" alt="score histograms">{% endif %}
<h2>Samples ({{ samples|length }} of {{ n_rows }})</h2>
<p class="small">Token background = strongest target-feature activation relative to its typical seed level
(darker = stronger). Hover a token for the value.</p>
<table><tr><th>#</th><th>source</th><th>text</th><th>target score</th><th>coverage</th><th>seed sim.</th>
<th>strength</th><th>steered features</th><th>seeds</th></tr>
{% for s in samples %}<tr><td>{{ loop.index }}</td><td class="src-{{ s.source }}">{{ s.source }}</td>
<td class="tok">{{ s.html }}</td><td>{{ s.target_score }}</td><td>{{ s.target_coverage }}</td>
<td>{{ s.seed_similarity }}</td><td>{{ s.strength }}</td>
<td>{% for n in s.target_features %}{{ feat(n) }}{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
<td class="small">{{ s.seed_ids }}</td></tr>{% endfor %}
</table>
<h2>Seeds vs outputs</h2>
<p>The seeds, highlighted the same way.</p>
<table><tr><th>seed</th><th>text</th><th>target score</th><th>coverage</th></tr>
{% for s in seeds %}<tr><td class="small">{{ s.id }}</td><td class="tok">{{ s.html }}</td><td>{{ s.target_score }}</td>
<td>{{ s.target_coverage }}</td></tr>{% endfor %}</table>
<h2>Stage timings (s)</h2>
<table>{% for k, v in timings.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
<h2 id="schema">Output schema (<code>samples.parquet</code>)</h2>
<pre>import polars as pl
df = pl.read_parquet("{{ parquet }}")
df.filter(pl.col("source") == "synthesized").sort("target_score", descending=True).select("text", "target_score")</pre>
<table><tr><th>column</th><th>type</th><th>meaning</th></tr>
{% for c, t, d in schema %}<tr><td><code>{{ c }}</code></td><td><code>{{ t }}</code></td><td>{{ d }}</td></tr>{% endfor %}
</table>
<table><tr><th>file metadata key</th><th>meaning</th></tr>
{% for k, v in file_metadata.items() %}<tr><td><code>{{ k }}</code></td><td>{{ v }}</td></tr>{% endfor %}</table>
</body></html>
"""  # noqa: E501 - template text: a line break inside it would change the page


def highlight(tokens: list[str] | None, acts: list[float] | None, text: str, max_tokens: int = 400):
    """HTML of the text with each token's background shaded by its target activation (0..1+)."""
    from markupsafe import Markup

    if not tokens:
        return Markup(html.escape(text or ""))
    acts = list(acts or [0.0] * len(tokens))
    parts = []
    for tok, a in list(zip(tokens, acts))[:max_tokens]:
        a = float(a or 0.0)
        alpha = min(1.0, a) * 0.85
        esc = html.escape(tok)
        if a > 0:
            parts.append(f'<span style="background:rgba(230,85,13,{alpha:.2f})" title="{a:.2f}">{esc}</span>')
        else:
            parts.append(esc)
    if len(tokens) > max_tokens:
        parts.append(" …")
    return Markup("".join(parts))


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return v


def _fires(table: pa.Table, features: list[int]) -> np.ndarray:
    if table is None or table.num_rows == 0 or not features:
        return np.zeros(len(features))
    pos = {f: j for j, f in enumerate(features)}
    hits = np.zeros((table.num_rows, len(features)), bool)
    for r, ids in enumerate(table.column("feature_ids").to_pylist()):
        for f in ids or []:
            j = pos.get(int(f))
            if j is not None:
                hits[r, j] = True
    return hits.mean(0)


def write_report(
    path: str | Path,
    samples: str | Path | pa.Table,
    seeds_scored: pa.Table | None = None,
    targets: list[dict] | None = None,
    summary: dict | None = None,
    max_samples: int = 60,
    title: str = "expand",
    features: Mapping[int, FeatureNote | Mapping] | None = None,
) -> Path:
    """Write the review page atomically. `samples`: the output table or its Parquet path; `seeds_scored`: the
    seeds scored like the outputs; `targets`: targets.json's list; `summary`: counts, timings, run facts;
    `features`: feature id → `FeatureNote` (label, label quality, dashboard link; `describe_features` makes
    them), shown wherever a feature is. Dashboards found in `dashboards/` next to the report are linked too."""
    import jinja2
    import pyarrow.compute as pc

    path = Path(path)
    parquet = str(samples) if not isinstance(samples, pa.Table) else ""
    table = pq.read_table(samples) if not isinstance(samples, pa.Table) else samples
    summary = dict(summary or {})
    targets = [dict(t) for t in (targets or [])]
    feats = [int(t["feature"]) for t in targets]
    groups: dict[str, pa.Table] = {}
    if seeds_scored is not None and seeds_scored.num_rows:
        groups["seed"] = seeds_scored
    for src in ("synthesized", "mined"):
        if table.num_rows and "source" in table.column_names:
            sub = table.filter(pc.equal(table["source"], src))
            if sub.num_rows:
                groups[src] = sub
    rates = {g: _fires(t, feats) for g, t in groups.items() if "feature_ids" in t.column_names}
    steered = {f: 0 for f in feats}
    if "target_features" in table.column_names:
        for fl in table.column("target_features").to_pylist():
            for f in fl or []:
                if int(f) in steered:
                    steered[int(f)] += 1
    for t in targets:
        t["coverage"] = {g: float(rates[g][feats.index(t["feature"])]) if g in rates else 0.0 for g in groups}
        t["steered"] = steered.get(int(t["feature"]), 0)
    score_cols = [
        c
        for c in ("target_score", "seed_similarity", "target_coverage")
        if any(c in t.column_names for t in groups.values())
    ]
    hist_data = {
        g: {c: t.column(c).to_numpy(zero_copy_only=False).astype(float) for c in score_cols if c in t.column_names}
        for g, t in groups.items()
    }
    hist_png = plots.histograms(hist_data, score_cols) if groups and score_cols else ""
    coverage_png = plots.coverage_bars(feats, rates) if feats and rates else ""
    rows = table.slice(0, max_samples).to_pylist() if table.num_rows else []
    shown = feats + [int(f) for r in rows for f in (r.get("target_features") or [])]
    notes = resolve_notes(shown, features, path.parent)
    for t in targets:
        t["note"] = notes[int(t["feature"])]
    samples_ctx = [
        {
            "source": r.get("source", ""),
            "html": highlight(r.get("tokens"), r.get("token_target_act"), r.get("text")),
            "target_features": [notes[int(f)] for f in (r.get("target_features") or [])],
            **{
                k: _fmt(r.get(k))
                for k in ("target_score", "target_coverage", "seed_similarity", "strength", "seed_ids")
            },
        }
        for r in rows
    ]
    seeds_ctx = [
        {
            "id": r.get("id"),
            "html": highlight(r.get("tokens"), r.get("token_target_act"), r.get("text")),
            "target_score": _fmt(r.get("target_score")),
            "target_coverage": _fmt(r.get("target_coverage")),
        }
        for r in (seeds_scored.to_pylist() if seeds_scored is not None else [])
    ]
    first = rows[0] if rows else {}
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(TEMPLATE).render(
        title=title,
        run_id=summary.get("run_id", first.get("run_id", "")),
        model=summary.get("model", first.get("model", "")),
        sae=summary.get("sae", first.get("sae", "")),
        layer=summary.get("layer", first.get("layer", "")),
        parquet=parquet,
        counts=summary.get("counts", {"rows": table.num_rows}),
        targets=targets,
        groups=list(groups),
        labelled=any(n.label for n in notes.values()),
        linked=any(n.dashboard for n in notes.values()),
        coverage_png=coverage_png,
        hist_png=hist_png,
        samples=samples_ctx,
        n_rows=table.num_rows,
        seeds=seeds_ctx,
        timings=summary.get("timings", {}),
        schema=OUTPUT_COLUMNS,
        file_metadata=FILE_METADATA,
    )
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _json(obj) -> str:
    return json.dumps(obj, default=str)
