"""Reading training text from Parquet / JSONL corpora, in a fixed order that can be resumed by position."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qscope.errors import InputError


def read_texts(
    path: str | Path, split: str | None = None, text_column: str = "text", start: int = 0, limit: int | None = None
) -> list[str]:
    """Texts of a corpus file (`qscope.io.read_texts`: .parquet / .jsonl / ...), optionally one `split`, from row
    `start` on.

    The order is the file's order (our corpus is shuffled when built), so a position in this list is a stable
    resume point for caching and streaming.
    """
    from qscope.io import read_texts as read_file_texts

    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"corpus {path} does not exist (build it with scripts/build_sae_corpus.py, or set corpus:)")
    texts = read_file_texts(path, text_column, split)
    end = None if limit is None else start + limit
    return texts[start:end]


def length_buckets(lengths: list[int], batch_tokens: int, max_length: int) -> Iterator[list[int]]:
    """Group positions into batches of similar length whose padded size stays under `batch_tokens`.

    Why: corpus texts range from a few to a thousand tokens; batching them in file order pads most of every batch
    (bench/README.md), and padding costs as much LM compute as real tokens.
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
