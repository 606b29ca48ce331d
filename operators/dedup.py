"""Dedup: near-duplicate removal among rows, and against reference texts (the seeds)."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pyarrow as pa

from qscope.errors import InputError
from qscope.operators.base import Operator, Resources, require_columns, set_column

_WORD = re.compile(r"\w+", re.UNICODE)


def shingles(text: str, n: int = 3) -> frozenset[int]:
    """Hashed word n-grams of the lower-cased text (a short text is one shingle)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return frozenset([zlib.crc32(" ".join(words).encode())]) if words else frozenset()
    return frozenset(zlib.crc32(" ".join(words[i : i + n]).encode()) for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / max(1, len(a | b))


def overlap(a: frozenset, b: frozenset) -> float:
    """Overlap coefficient |a∩b| / min(|a|, |b|): 1.0 when one text's shingles are all inside the other's, so a
    seed copied with a sentence appended (or a templated sibling that swaps one name) still scores high, where
    Jaccard is diluted by the length difference."""
    if not a and not b:
        return 1.0
    return len(a & b) / max(1, min(len(a), len(b)))


MEASURES = {"jaccard": jaccard, "overlap": overlap}


def check_dedup_args(measure: str, threshold: float, prefix: str = "dedup ") -> None:
    """The one validation of dedup settings: the operator's arguments, and the pipelines' `dedup:` config
    (prefix "dedup.", so errors name the config key)."""
    if measure not in MEASURES:
        raise InputError(f"{prefix}measure must be one of {sorted(MEASURES)}, got {measure!r}")
    if not 0.0 < float(threshold) <= 1.0:
        raise InputError(f"{prefix}threshold must be in (0, 1], got {threshold}")


class Dedup(Operator):
    """Drop near-duplicates: rows whose word-3-gram similarity with an earlier kept row (or with any text of
    `reference`, e.g. the seeds — a generation that copies a seed is not new data) is >= `threshold`.

    `measure`: "jaccard" (|a∩b| / |a∪b|: near-identical texts) or "overlap" (|a∩b| / min(|a|, |b|): also
    catches a text contained in another — a seed copied plus one added sentence, or boilerplate siblings such
    as Debian's "X device support for SoapySDR" packages that differ in one name).

    Adds `duplicate_of` only when `keep_duplicates=True` (then nothing is dropped: review mode). Order matters:
    the first occurrence wins, so sort by quality first. Dedup needs to see all rows at once — run it on the
    collected table (on the driver, or `ds.repartition(1).map_batches(**Dedup.map_batches_kwargs(kw,
    batch_size=None))`); for millions of rows use the signature index instead (`qscope.index.dedup_keep_mask`).

        from qscope.operators import Dedup
        unique = Dedup(threshold=0.8, reference=seed_texts)(table)
    """

    name: ClassVar[str] = "dedup"

    def __init__(
        self,
        threshold: float = 0.8,
        reference: Sequence[str] = (),
        reference_ids: Sequence[str] = (),
        text_column: str = "text",
        keep_duplicates: bool = False,
        measure: str = "jaccard",
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        check_dedup_args(measure, threshold)
        self.similarity = MEASURES[measure]
        self.threshold, self.text_column, self.keep_duplicates = float(threshold), text_column, keep_duplicates
        self.reference = [shingles(t) for t in reference]
        self.reference_ids = list(reference_ids) or [f"reference:{i}" for i in range(len(self.reference))]

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, self.text_column, op=self.name)
        texts = table.column(self.text_column).to_pylist()
        ids = table.column("id").to_pylist() if "id" in table.column_names else [str(i) for i in range(len(texts))]
        kept: list[tuple[str, frozenset]] = list(zip(self.reference_ids, self.reference))
        # Inverted index shingle -> kept entries, so each row is compared only with rows sharing a shingle.
        postings: dict[int, list[int]] = {}
        for j, (_, sh) in enumerate(kept):
            for h in sh:
                postings.setdefault(h, []).append(j)
        dup_of: list[str | None] = []
        for rid, text in zip(ids, texts):
            sh = shingles(text or "")
            cands = {j for h in sh for j in postings.get(h, ())}
            hit = next((kept[j][0] for j in sorted(cands) if self.similarity(sh, kept[j][1]) >= self.threshold), None)
            if hit is None and not sh:
                hit = "(empty)"
            dup_of.append(hit)
            if hit is None:
                kept.append((rid, sh))
                for h in sh:
                    postings.setdefault(h, []).append(len(kept) - 1)
        if self.keep_duplicates:
            return set_column(table, "duplicate_of", pa.array(dup_of, pa.string()))
        return table.filter(pa.array(np.array([d is None for d in dup_of], bool)))
