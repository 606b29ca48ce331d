"""Matplotlib figures for the review report, returned as base64 PNG data URIs (no files, no JS)."""

from __future__ import annotations

import base64
import io

import numpy as np

COLORS = {"seed": "#4c72b0", "synthesized": "#dd8452", "mined": "#55a868"}


def _fig_to_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def histograms(groups: dict[str, dict[str, np.ndarray]], columns: list[str], bins: int = 20) -> str:
    """One panel per score column; one histogram per source group (seed / synthesized / mined)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.0), squeeze=False)
    for ax, col in zip(axes[0], columns):
        vals = [v[col] for v in groups.values() if col in v and len(v[col])]
        lo = min((float(np.nanmin(v)) for v in vals), default=0.0)
        hi = max((float(np.nanmax(v)) for v in vals), default=1.0)
        edges = np.linspace(min(lo, 0.0), max(hi, lo + 1e-6), bins + 1)
        for name, v in groups.items():
            if col in v and len(v[col]):
                ax.hist(
                    v[col],
                    bins=edges,
                    alpha=0.55,
                    label=f"{name} (n={len(v[col])})",
                    color=COLORS.get(name),
                    density=True,
                )
        ax.set_title(col)
        ax.set_xlabel(col)
        ax.legend(fontsize=7)
    return _fig_to_uri(fig)


def coverage_bars(features: list[int], rates: dict[str, np.ndarray]) -> str:
    """Fraction of texts in each group on which each target feature fires."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(features) + 2), 3.0))
    x = np.arange(len(features))
    w = 0.8 / max(1, len(rates))
    for i, (name, r) in enumerate(rates.items()):
        ax.bar(x + i * w - 0.4 + w / 2, r, width=w, label=name, color=COLORS.get(name))
    ax.set_xticks(x, [str(f) for f in features], rotation=45, fontsize=8)
    ax.set_xlabel("target feature")
    ax.set_ylabel("fraction of texts where it fires")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    return _fig_to_uri(fig)
