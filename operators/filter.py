"""FilterByScore: keep rows whose score columns pass thresholds (stateless)."""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qscope.errors import InputError
from qscope.operators.base import Operator, Resources, require_columns

# A word: one CJK ideograph (those scripts write no spaces, so a whole sentence would be one "word"), or a run of
# other letters and digits.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")

MIN_DISTINCT_WORD_RATIO = 0.4
"""Below this a text is degenerate: the expand filter's default, and the rule `qscope sweep` and
bench/steering_efficacy.py apply before a judge's verdict counts."""


def distinct_word_ratio(text: str | None) -> float:
    """Distinct words / words: degenerate steered outputs ("telephone telephone telephone ...") score low. Words
    are runs of letters and digits, so a repetition glued by hyphens ("ham-radio-ham-ham-ham-...", kept by the
    demo when words were split on spaces) counts as the repetition it is; each CJK ideograph is a word of its own
    ("文文文文..." from a steered Qwen is degenerate too)."""
    words = _WORD.findall((text or "").lower())
    return len(set(words)) / len(words) if words else 0.0


class FilterByScore(Operator):
    """Keep rows with `column >= min_value` (and `<= max_value` when given) for every rule in `rules`.

    rules: {"target_score": 0.3, "seed_similarity": 0.1} (minimums) or {"col": [min, max]}; `min_chars` also
    drops rows whose `text` is shorter (empty generations), `min_distinct_word_ratio` rows that repeat themselves
    (distinct words / words below it). Nulls never pass.

        from qscope.operators import FilterByScore
        keep = FilterByScore(rules={"target_score": 0.3}, min_chars=20)(scored_table)
        ds.map_batches(**FilterByScore.map_batches_kwargs({"rules": {"target_score": 0.3}}, {"num_cpus": 0.25}))
    """

    name: ClassVar[str] = "filter_by_score"

    def __init__(
        self,
        rules: dict,
        min_chars: int = 0,
        text_column: str = "text",
        min_distinct_word_ratio: float = 0.0,
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        self.rules: dict[str, tuple[float | None, float | None]] = {}
        for col, rule in (rules or {}).items():
            lo, hi = (rule, None) if not isinstance(rule, (list, tuple)) else tuple(rule)
            if lo is not None and hi is not None and lo > hi:
                raise InputError(f"filter rule for {col}: min {lo} > max {hi}")
            self.rules[col] = (lo, hi)
        self.min_chars, self.text_column = int(min_chars), text_column
        self.min_distinct = float(min_distinct_word_ratio)

    def mask(self, table: pa.Table) -> np.ndarray:
        require_columns(table, *self.rules, op=self.name)
        keep = np.ones(table.num_rows, bool)
        for col, (lo, hi) in self.rules.items():
            vals = table.column(col).to_numpy(zero_copy_only=False).astype(np.float64)
            ok = ~np.isnan(vals)
            if lo is not None:
                ok &= np.nan_to_num(vals, nan=-np.inf) >= lo
            if hi is not None:
                ok &= np.nan_to_num(vals, nan=np.inf) <= hi
            keep &= ok
        if self.min_chars and self.text_column in table.column_names:
            lens = pc.fill_null(pc.utf8_length(pc.utf8_trim_whitespace(table.column(self.text_column))), 0)
            keep &= lens.to_numpy(zero_copy_only=False) >= self.min_chars
        if self.min_distinct and self.text_column in table.column_names:
            keep &= np.array(
                [distinct_word_ratio(t) >= self.min_distinct for t in table.column(self.text_column).to_pylist()], bool
            )
        return keep

    def process(self, table: pa.Table) -> pa.Table:
        return table.filter(pa.array(self.mask(table)))
