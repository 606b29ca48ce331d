"""Jinja2 templates of the static dashboards. Self-contained pages: inline CSS/SVG/JS, no network fetches."""

BASE_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 70rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; border-bottom: 1px solid #ddd; }
.meta td { padding: 0 1rem 0 0; } .muted { color: #777; font-size: 0.9em; }
.example { font-family: ui-monospace, monospace; font-size: 0.85rem; white-space: pre-wrap; padding: 0.35rem 0.5rem;
           margin: 0.25rem 0; border-left: 3px solid #f0a040; background: #fcfcfc; }
.tok { border-radius: 2px; } .tok.max { outline: 1.5px solid #c05000; }
.nl { color: #bbb; }
table.list { border-collapse: collapse; } table.list td, table.list th { padding: 0.15rem 0.6rem; text-align: left; }
table.list tr:nth-child(even) { background: #f6f6f6; }
.cols { display: flex; gap: 2rem; flex-wrap: wrap; }
.bar { fill: #f0a040; } .axis { stroke: #999; } svg text { font-size: 10px; fill: #555; }
.pos { color: #0a6; } .neg { color: #c33; }
.feature-link { cursor: pointer; text-decoration: underline dotted; }
.selected { background: #ffe9c7; }
"""

MACROS = r"""
{% macro tokens(ex, vmax) -%}
<div class="example" data-kind="{{ ex.kind }}" data-value="{{ '%.4f'|format(ex.max_value) }}">
{%- for t in ex.toks -%}
<span class="tok{% if loop.index0 == ex.max_index %} max{% endif %}" data-v="{{ t.v }}" title="{{ '%.3f'|format(t.v) }}"
 style="background: rgba(255, 120, 0, {{ '%.3f'|format((t.v / vmax) if vmax > 0 else 0) }})">
{%- if t.nl %}<span class="nl">⏎</span>{% endif %}{{ t.s }}</span>
{%- endfor -%}
</div>
{%- endmacro %}
{% macro histogram(h, title) -%}
{% if h.heights %}
{% set hmax = h.heights|max %}{% set n = h.heights|length %}
<svg class="histogram" width="420" height="150" role="img" aria-label="{{ title }}">
  {% for c in h.heights %}
  <rect class="bar" x="{{ 30 + loop.index0 * (380 / n) }}" y="{{ 120 - (100 * c / hmax if hmax else 0) }}"
        width="{{ (380 / n) - 1 }}" height="{{ 100 * c / hmax if hmax else 0 }}"><title>{{ h['values'][loop.index0] }}: {{ c }}</title></rect>
  {% endfor %}
  <line class="axis" x1="30" y1="120" x2="410" y2="120"/>
  <text x="30" y="135">{{ '%.3g'|format(h['values'][0]) }}</text>
  <text x="380" y="135">{{ '%.3g'|format(h['values'][-1]) }}</text>
  <text x="30" y="12">max count {{ hmax }}</text>
</svg>
{% else %}<p class="muted">no activations in the sample</p>{% endif %}
{%- endmacro %}
"""

FEATURE_PAGE = (
    MACROS
    + r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>feature {{ d.feature }} — {{ d.sae }}</title>
<style>{{ css }}</style></head>
<body data-feature="{{ d.feature }}">
<p class="muted"><a href="index.html">all features</a></p>
<h1>Feature {{ d.feature }} <span class="muted">{{ d.sae }} · layer {{ d.layer }} · {{ d.model }}</span></h1>
<p id="label"><b>{{ d.label }}</b>
{% if d.label_score %}<span class="muted">label score (held-out balanced accuracy) {{ d.label_score.balanced_accuracy }}</span>{% endif %}</p>
{% if d.lm_label %}<p id="lm-label">LM-written: <i>{{ d.lm_label }}</i></p>{% endif %}
<table class="meta" id="stats"><tr>
<td>density <b id="density">{{ '%.4g'|format(d.density * 100) }}%</b> of tokens</td>
<td>max activation <b id="max-activation">{{ '%.4g'|format(d.max_activation) }}</b></td>
<td>sample: {{ d.n_docs }} texts, {{ d.n_tokens }} tokens{% if d.stats_source != 'sample' %} · density/max from {{ d.stats_source }}{% endif %}</td>
</tr>{% if d.quantile_stats %}<tr><td colspan="3">activation quantiles (when active):
{% for k, v in d.quantile_stats.items() %}{{ k }} <b>{{ '%.4g'|format(v) }}</b> {% endfor %}</td></tr>{% endif %}</table>
<div class="cols">
<div><h2>Activation histogram</h2>{{ histogram(d.histogram, 'activation histogram') }}</div>
<div><h2>Promoted tokens</h2><table class="list" id="promoted">
{% for t, v in d.promoted %}<tr><td><code>{{ t|tojson }}</code></td><td class="pos">+{{ '%.3f'|format(v) }}</td></tr>{% endfor %}</table></div>
<div><h2>Suppressed tokens</h2><table class="list" id="suppressed">
{% for t, v in d.suppressed %}<tr><td><code>{{ t|tojson }}</code></td><td class="neg">{{ '%.3f'|format(v) }}</td></tr>{% endfor %}</table></div>
</div>
<h2>Top activations</h2>
<div id="top-examples">{% for ex in d.top %}{{ tokens(ex, d.max_activation) }}{% endfor %}</div>
<h2>Quantile samples</h2>
<div id="quantiles">{% for q in d.quantiles %}
<div class="quantile" data-lo="{{ q.lo }}" data-hi="{{ q.hi }}"><p class="muted">activation in ({{ '%.3g'|format(q.lo) }}, {{ '%.3g'|format(q.hi) }}]</p>
{% for ex in q.examples %}{{ tokens(ex, d.max_activation) }}{% endfor %}</div>{% endfor %}</div>
<script>document.body.dataset.rendered = "1";
document.body.dataset.examples = String(document.querySelectorAll('#top-examples .example').length);</script>
</body></html>
"""
)

INDEX_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qscope features — {{ sae }}</title><style>{{ css }}</style></head>
<body><h1>Features <span class="muted">{{ sae }} · layer {{ layer }} · {{ model }}</span></h1>
<table class="list" id="features"><tr><th>feature</th><th>label</th><th>density</th><th>max</th><th>label score</th></tr>
{% for d in features %}<tr class="feature-row"><td><a href="feature-{{ d.feature }}.html">{{ d.feature }}</a></td><td>{{ d.label }}</td>
<td>{{ '%.3g'|format(d.density * 100) }}%</td><td>{{ '%.3g'|format(d.max_activation) }}</td>
<td>{{ d.label_score.balanced_accuracy if d.label_score else '' }}</td></tr>{% endfor %}</table>
{% if sweep %}<p><a href="sweep.html">strength → output sweep</a></p>{% endif %}
<script>document.body.dataset.rendered = "1";</script>
</body></html>
"""

PROMPT_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qscope inspect</title><style>{{ css }}</style></head>
<body><h1>Features of a text <span class="muted">{{ d.sae }} · layer {{ d.layer }} · {{ d.model }}</span></h1>
<p class="muted">Click a feature to highlight where it fires; hover a token for its top features.</p>
<div class="example" id="text">
{%- for t in d.tokens -%}
<span class="tok" data-i="{{ loop.index0 }}" title="{% for f in t.features[:5] %}#{{ f.id }} {{ '%.2f'|format(f.value) }} {{ f.label }}&#10;{% endfor %}">
{%- if t.nl %}<span class="nl">⏎</span>{% endif %}{{ t.s }}</span>
{%- endfor -%}
</div>
<div class="cols">
<div><h2>Top features of the text</h2>
<table class="list" id="doc-features"><tr><th>feature</th><th>max</th><th>tokens</th><th>label</th></tr>
{% for f in d.features %}<tr class="doc-feature" data-feature="{{ f.id }}"><td><span class="feature-link">{{ f.id }}</span></td>
<td>{{ '%.3f'|format(f.value) }}</td><td>{{ f.n_tokens }}</td><td>{{ f.label }}</td></tr>{% endfor %}</table></div>
<div><h2>Per token</h2><table class="list" id="per-token"><tr><th>token</th><th>top features</th></tr>
{% for t in d.tokens %}<tr class="token-row"><td><code>{{ t.raw|tojson }}</code></td>
<td>{% for f in t.features[:5] %}{{ f.id }} ({{ '%.2f'|format(f.value) }}){% if not loop.last %}, {% endif %}{% endfor %}</td></tr>{% endfor %}
</table></div></div>
<script id="acts" type="application/json">{{ d.per_feature|tojson }}</script>
<script>
const acts = JSON.parse(document.getElementById('acts').textContent);
const toks = document.querySelectorAll('#text .tok');
function show(fid) {
  const vals = acts[fid] || {}; const vmax = Math.max(1e-9, ...Object.values(vals));
  toks.forEach((el, i) => { const v = vals[i] || 0; el.style.background = `rgba(255,120,0,${(v / vmax).toFixed(3)})`; });
  document.querySelectorAll('.doc-feature').forEach(r => r.classList.toggle('selected', r.dataset.feature === String(fid)));
  document.body.dataset.shown = String(fid);
}
document.querySelectorAll('.doc-feature').forEach(r => r.addEventListener('click', () => show(r.dataset.feature)));
const first = document.querySelector('.doc-feature'); if (first) show(first.dataset.feature);
document.body.dataset.rendered = "1";
</script>
</body></html>
"""

SWEEP_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qscope steering sweep</title><style>{{ css }}</style></head>
<body><h1>Strength → output <span class="muted">{{ title }}</span></h1>
{% if chart %}
<svg id="sweep-chart" width="560" height="220" role="img" aria-label="strength sweep">
  <line class="axis" x1="40" y1="180" x2="540" y2="180"/><line class="axis" x1="40" y1="20" x2="40" y2="180"/>
  {% for s in chart.series %}
  <polyline fill="none" stroke="{{ s.color }}" stroke-width="2" points="{{ s.points }}"/>
  {% for p in s.dots %}<circle cx="{{ p[0] }}" cy="{{ p[1] }}" r="3" fill="{{ s.color }}"><title>{{ s.name }} {{ p[2] }}</title></circle>{% endfor %}
  <text x="{{ 445 }}" y="{{ 30 + loop.index0 * 14 }}" fill="{{ s.color }}">{{ s.name }} (max {{ '%.3g'|format(s.max) }})</text>
  {% endfor %}
  {% for x, label in chart.ticks %}<text x="{{ x }}" y="195">{{ label }}</text>{% endfor %}
  <text x="250" y="212">strength</text>
</svg>
<p class="muted">each series scaled to its own maximum</p>
{% endif %}
<table class="list" id="sweep"><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}<th>sample output</th></tr>
{% for r in rows %}<tr class="sweep-row">{% for c in columns %}<td>{{ r.cells[loop.index0] }}</td>{% endfor %}
<td><div class="example sample">{{ r.sample }}</div></td></tr>{% endfor %}</table>
<script>document.body.dataset.rendered = "1";</script>
</body></html>
"""
