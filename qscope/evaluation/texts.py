"""Evaluation text: loading a file or the held-out corpus, and choosing texts for a token budget.

Every statistic in `qscope.evaluation` runs over the same kind of tokens: real (non-padding) tokens after
position 0, skipping special tokens. Position 0 is the attention sink (residual norm ~100x the others) and
special tokens (BOS/EOS) carry sink-like norms; SAEs are neither trained nor meant to be read there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qscope.errors import InputError
from qscope.paths import qscope_home

HELDOUT_SPLIT = "heldout"
SHIPPED_EVAL_NAME = "qscope heldout-debian v1"
"""How the shipped evaluation set is named in results, model cards and feature statistics."""


SAE_HELDOUT_TEXTS = "heldout_texts.jsonl"
"""A small held-out evaluation set shipped next to an SAE's weights, for SAEs trained on another corpus than the
default one (the Qwen SAE: its set also holds Chinese and code, which the Debian set lacks)."""


def default_corpus_path() -> Path:
    """The corpus `scripts/build_sae_corpus.py` writes (not in git: built once per machine)."""
    return qscope_home() / "corpora" / "sae_corpus.parquet"


def shipped_eval_path() -> Path:
    """The held-out evaluation set inside the package (`scripts/build_eval_texts.py`): Debian package
    descriptions from the held-out split of the SAE corpus, ~65k tokens; never seen in training."""
    from importlib import resources

    return Path(str(resources.files("qscope") / "assets" / "eval" / "heldout_debian.parquet"))


@dataclass
class EvalTexts:
    """Texts plus a name for where they came from (goes into model cards and feature statistics).

    The name never holds a machine's absolute path: artefacts built here are shipped and read elsewhere.
    """

    texts: list[str]
    source: str


def load_texts(path: str | Path | None = None, sae_dir: str | Path | None = None) -> EvalTexts:
    """Load evaluation texts.

    path None: the SAE's own held-out set when `sae_dir` holds one (`heldout_texts.jsonl`), else the held-out
    evaluation set shipped in the package (`shipped_eval_path`), so evaluation needs nothing built or downloaded.
    `.parquet`: a "text" column; if it also has a "split" column holding "heldout" rows, only those are used (the
    full SAE corpus, `default_corpus_path()`, works that way). Any other file goes through `qscope.io.read_texts`
    (.jsonl / .json / .csv / .tsv with a "text" field, or .txt / .md: documents separated by blank lines, else one
    per line).
    """
    if path is None and sae_dir is not None and (Path(sae_dir) / SAE_HELDOUT_TEXTS).is_file():
        from qscope.io import read_texts

        # Named by the SAE directory and file, never by this machine's absolute path (see EvalTexts).
        return EvalTexts(read_texts(Path(sae_dir) / SAE_HELDOUT_TEXTS), f"{Path(sae_dir).name}/{SAE_HELDOUT_TEXTS}")
    if path is None:
        shipped = shipped_eval_path()
        if not shipped.exists():  # a broken install; say what is missing rather than fail inside pyarrow
            raise InputError(
                f"no evaluation texts: the shipped set {shipped} is missing from this installation (reinstall "
                "qscope), or pass --texts FILE (.jsonl / .parquet / .txt)."
            )
        out = _load_parquet(shipped)
        return EvalTexts(out.texts, SHIPPED_EVAL_NAME)
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"texts file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        out = _load_parquet(path)
    else:  # .jsonl / .json / .csv / .txt ...: the shared reader (same errors as seed files)
        from qscope.io import read_texts

        out = EvalTexts(read_texts(path), path.name)
    if not out.texts:
        raise InputError(f"{path}: no non-empty texts found")
    return out


def _load_parquet(path: Path) -> EvalTexts:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    if "text" not in names:
        raise InputError(f"{path}: parquet file has no 'text' column (columns: {names})")
    cols = ["text"] + (["split"] if "split" in names else [])
    table = pq.read_table(path, columns=cols).to_pydict()
    texts = table["text"]
    source = path.name  # a name, not this machine's path: it is recorded in shipped cards and statistics
    if "split" in table and HELDOUT_SPLIT in set(table["split"]):
        texts = [t for t, s in zip(texts, table["split"]) if s == HELDOUT_SPLIT]
        source = f"{path.name} (split={HELDOUT_SPLIT})"
    return EvalTexts([t for t in texts if isinstance(t, str) and t.strip()], source)


def select_texts(tokenizer, texts: Sequence[str], n_tokens: int, max_length: int, seed: int = 0) -> list[str]:
    """A deterministic random subset of `texts` holding about `n_tokens` evaluation tokens.

    Shuffled with `seed` first, because corpora are usually ordered by source and the first n tokens
    would then come from one source only. Returned sorted by length so that batches waste little padding.
    """
    if n_tokens <= 0:
        raise InputError(f"n_tokens must be positive, got {n_tokens}")
    order = np.random.default_rng(seed).permutation(len(texts))
    chosen: list[tuple[int, str]] = []
    total = 0
    for start in range(0, len(order), 256):
        chunk = [texts[i] for i in order[start : start + 256]]
        lengths = [len(ids) for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]]
        for text, n in zip(chunk, lengths):
            # Tokens that count: everything after the sink (we prepend BOS), cut at max_length.
            usable = min(n + 1, max_length) - 1
            if usable <= 0:
                continue
            chosen.append((usable, text))
            total += usable
            if total >= n_tokens:
                break
        if total >= n_tokens:
            break
    if not chosen:
        raise InputError("no usable evaluation texts (all empty after tokenization)")
    return [t for _, t in sorted(chosen, key=lambda p: p[0])]


def batches_by_tokens(texts: Sequence[str], tokenizer, max_length: int, batch_tokens: int) -> list[list[str]]:
    """Group length-sorted texts so each padded batch holds at most ~batch_tokens positions."""
    lengths = [min(len(ids) + 1, max_length) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    batches: list[list[str]] = []
    current: list[str] = []
    longest = 0
    for text, n in zip(texts, lengths):
        if current and max(longest, n) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(text)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def eval_token_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: set[int]) -> torch.Tensor:
    """[batch, seq] bool: real tokens after position 0 that are not special tokens."""
    mask = attention_mask.bool().clone()
    mask[:, 0] = False
    if special_ids:
        mask &= ~torch.isin(input_ids, torch.tensor(sorted(special_ids), device=input_ids.device))
    return mask


@dataclass
class EvalPlan:
    """What an evaluation pass over an SAE reads: the resolved layer, the batches of chosen texts, the tokens."""

    layer: int
    max_length: int
    source: str
    batches: Sequence[list[str]]
    special_ids: set[int]
    n_texts: int


def plan_eval(
    lm,
    sae,
    texts: Sequence[str] | EvalTexts,
    layer: int | None,
    n_tokens: int,
    max_length: int | None,
    batch_tokens: int,
    seed: int,
    progress: bool = False,
    desc: str = "eval",
) -> EvalPlan:
    """Shared set-up of `evaluate_sae` and `compute_feature_stats`: resolve + check the layer, choose about
    `n_tokens` tokens of texts (`select_texts`), batch them by padded size, wrap in a progress bar if asked."""
    from qscope.evaluation.metrics import _resolve_layer

    source = texts.source if isinstance(texts, EvalTexts) else "texts given in code"
    texts = texts.texts if isinstance(texts, EvalTexts) else list(texts)
    layer = _resolve_layer(lm, sae, layer)
    max_length = max_length or lm.max_length
    chosen = select_texts(lm.tokenizer, lm.validate_texts(texts), n_tokens, max_length, seed)
    batches = batches_by_tokens(chosen, lm.tokenizer, max_length, batch_tokens)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"{desc} {sae.sae_id} @ layer {layer}", unit="batch")
    return EvalPlan(layer, max_length, source, batches, set(lm.tokenizer.all_special_ids), len(chosen))
