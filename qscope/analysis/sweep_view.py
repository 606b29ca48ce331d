"""A view of a steering strength sweep: strength vs on-target activation vs perplexity, with sample outputs.

Accepts the sweep table as a polars/pandas DataFrame, a list of dicts, or a dict of columns. Columns are found
by name: `strength` (required); any numeric columns (on-target rate, target activation, perplexity, ...) are
plotted, each scaled to its own maximum; the first of sample / samples / output / outputs / text is shown as the
sample output (a list shows its first item).
"""

from __future__ import annotations

from pathlib import Path

from qscope.analysis import templates
from qscope.errors import InputError

SAMPLE_KEYS = ("sample", "samples", "sample_output", "sample_outputs", "output", "outputs", "text", "texts")
COLORS = ("#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e")


PLOT_FIRST = ("on_target_rate", "mean_max_activation", "target_activation", "perplexity")


def _rows(table) -> list[dict]:
    if hasattr(table, "rows") and hasattr(table, "samples"):  # qscope.steering.sweep.SweepResult
        return [dict(r, samples=table.samples.get(r["strength"], [])) for r in table.rows]
    if isinstance(table, dict) and "rows" in table:  # SweepResult.to_dict() / its JSON
        samples = {float(k): v for k, v in (table.get("samples") or {}).items()}
        return [dict(r, samples=samples.get(float(r["strength"]), r.get("samples"))) for r in table["rows"]]
    if hasattr(table, "to_dicts"):  # polars
        return table.to_dicts()
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # pandas
        return table.to_dict("records")
    if isinstance(table, dict):
        keys = list(table)
        return [dict(zip(keys, vals)) for vals in zip(*table.values())]
    rows = [r if isinstance(r, dict) else (r.to_dict() if hasattr(r, "to_dict") else vars(r)) for r in table]
    return rows


def _sample(row: dict) -> str:
    for k in SAMPLE_KEYS:
        if k in row and row[k] is not None:
            v = row[k]
            if isinstance(v, (list, tuple)):
                v = v[0] if v else ""
            if isinstance(v, dict):
                v = v.get("text", "")
            return str(getattr(v, "text", v))
    return ""


def sweep_view_data(table) -> dict:
    rows = _rows(table)
    if not rows or "strength" not in rows[0]:
        raise InputError("a sweep table needs rows with a 'strength' column")
    rows = sorted(rows, key=lambda r: float(r["strength"]))
    columns = ["strength"] + [k for k in rows[0] if k != "strength" and k not in SAMPLE_KEYS]
    numeric = [
        k for k, v in rows[0].items() if k != "strength" and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    preferred = [k for k in PLOT_FIRST if k in numeric]
    numeric = preferred or numeric
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    out_rows = [{"cells": [fmt(r.get(c)) for c in columns], "sample": _sample(r)} for r in rows]
    xs = [float(r["strength"]) for r in rows]
    lo, hi = min(xs), max(xs)
    xpos = lambda x: 40 + 500 * ((x - lo) / (hi - lo) if hi > lo else 0.5)  # noqa: E731
    series = []
    for i, c in enumerate(numeric[:5]):
        ys = [float(r[c]) if r.get(c) is not None and r[c] == r[c] else 0.0 for r in rows]  # NaN -> 0
        top = max(max(abs(y) for y in ys), 1e-12)
        dots = [(round(xpos(x), 1), round(180 - 160 * y / top, 1), f"{y:.4g}") for x, y in zip(xs, ys)]
        series.append(
            {
                "name": c,
                "color": COLORS[i],
                "max": top,
                "dots": dots,
                "points": " ".join(f"{a},{b}" for a, b, _ in dots),
            }
        )
    ticks = [(round(xpos(x), 1) - 6, f"{x:g}") for x in xs]
    return {"columns": columns, "rows": out_rows, "chart": {"series": series, "ticks": ticks} if series else None}


def _title(table, title: str) -> str:
    if title or not hasattr(table, "feature"):
        return title
    best = "none within the perplexity bound" if table.best_strength is None else f"{table.best_strength:g}"
    return (
        f"{table.op} feature {table.feature} at layer {table.layer} · best strength {best} "
        f"(perplexity bound {table.perplexity_bound:.3g})"
    )


def render_sweep(table, title: str = "") -> str:
    import jinja2

    title = _title(table, title)
    d = sweep_view_data(table)
    env = jinja2.Environment(autoescape=True)
    return env.from_string(templates.SWEEP_PAGE).render(title=title, css=templates.BASE_CSS, **d)


def write_sweep(table, path: str | Path, title: str = "") -> Path:
    from qscope.paths import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(render_sweep(table, title), encoding="utf-8")
    return path


def sweep_text(table) -> str:
    """The sweep as a plain-text table (for terminals and the README)."""
    d = sweep_view_data(table)
    lines = [" | ".join(d["columns"] + ["sample output"])]
    for r in d["rows"]:
        lines.append(" | ".join(r["cells"] + [r["sample"].replace("\n", " ")[:80]]))
    return "\n".join(lines)
