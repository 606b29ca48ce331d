"""Reading training text from Parquet / JSONL corpora, in a fixed order that can be resumed by position."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from qscope.errors import InputError


def read_texts(path: str | Path, split: str | None = None, text_column: str = "text", start: int = 0,
               limit: int | None = None) -> list[str]:
    """Texts of a corpus file (`.parquet` or `.jsonl`), optionally one `split`, from row `start` on.

    The order is the file's order (our corpus is shuffled when built), so a position in this list is a stable
    resume point for caching and streaming.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"corpus {path} does not exist (build it with scripts/build_sae_corpus.py, or set corpus:)")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        if text_column not in schema.names:
            raise InputError(f"corpus {path} has no column {text_column!r} (columns: {schema.names})")
        cols = [text_column] + (["split"] if split and "split" in schema.names else [])
        table = pq.read_table(path, columns=cols)
        texts = table.column(text_column).to_pylist()
        if split and "split" in cols:
            texts = [t for t, s in zip(texts, table.column("split").to_pylist()) if s == split]
    elif path.suffix in (".jsonl", ".json"):
        texts = []
        with path.open() as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    if split and row.get("split", split) != split:
                        continue
                    texts.append(row[text_column])
    else:
        raise InputError(f"corpus {path}: expected a .parquet or .jsonl file")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise InputError(f"corpus {path} has no non-empty texts" + (f" in split {split!r}" if split else ""))
    end = None if limit is None else start + limit
    return texts[start:end]


def length_buckets(lengths: list[int], batch_tokens: int, max_length: int) -> Iterator[list[int]]:
    """Group positions into batches of similar length whose padded size stays under `batch_tokens`.

    Why: corpus texts range from 3 to 1000 tokens; batching them in file order pads ~70% of every batch (measured
    on this corpus: 2.3k real of 8.2k padded tokens), and padding costs as much LM compute as real tokens.
    Sorting a window of texts by length first cuts that waste to a few percent while each text still runs on its
    own (BOS + text, as at inference), so the SAE sees the same distribution FeatureExtractor feeds it.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    longest = 0
    for i in order:
        n = min(lengths[i], max_length)
        if batch and max(longest, n) * (len(batch) + 1) > batch_tokens:
            yield batch
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, n)
    if batch:
        yield batch
