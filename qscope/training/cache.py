"""On-disk activation cache: float16 `.npy` shards per layer + a manifest, read memory-mapped.

Layout of a cache directory:

    manifest.json              model, layers, d_in, shards [{name, n_tokens}], texts_done, corpus, ...
    layer15/shard-00000.npy    float16 [n_tokens, d_in]; row i of every layer's shard is the same token

Every shard is written to a temporary name and renamed, then the manifest is rewritten atomically, so a reader
(or a crash) never sees a half-written shard, and `cache_activations` resumes after the last complete shard.
Why a cache at all: on CPU the LM forward costs an order of magnitude more per token than an SAE step
(bench/README.md), so activations are computed once and reused for several runs / epochs / architectures.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from qscope.errors import InputError
from qscope.paths import atomic_path

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


class CacheSummary(NamedTuple):
    """What `cache_activations` left on disk."""

    path: Path
    n_tokens: int
    n_shards: int
    texts_done: int
    tokens_per_s: float


def read_manifest(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not (path / MANIFEST).exists():
        raise InputError(
            f"{path} is not an activation cache (no {MANIFEST}); build one with qscope.training.cache_activations"
        )
    return json.loads((path / MANIFEST).read_text())


def _write_manifest(path: Path, manifest: dict) -> None:
    with atomic_path(path / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def _save_npy(final: Path, array: np.ndarray) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)


def cache_activations(
    out: str | Path,
    corpus: str | Path,
    layers: Sequence[int],
    model: str | None = None,
    split: str | None = "train",
    max_tokens: int | None = None,
    max_length: int = 256,
    batch_tokens: int = 4096,
    shard_texts: int = 2048,
    lm=None,
    progress: bool = True,
    texts_from: int = 0,
    max_texts: int | None = None,
) -> CacheSummary:
    """Run the LM over `corpus` and store residual activations of `layers` (sink + padding excluded).

    Resumable: an existing cache for the same model/layers/corpus/split continues after its last shard.
    Stops after the shard that reaches `max_tokens` (None = the whole split), or after `max_texts` texts (counted
    from `texts_from`).
    texts_from: start at this text of the split. Two processes can then fill two caches over disjoint ranges
    (`max_texts` = the second one's `texts_from`), and training reads both (`TrainConfig.cache` as a list): on a
    shared 2-core machine two single-threaded LM processes read more tokens/s than one two-threaded one
    (bench/README.md), whose OpenMP threads wait on each other whenever another job holds a core.
    """
    from qscope.models import LanguageModel
    from qscope.training.activations import iter_lm_activations
    from qscope.training.text import read_texts

    out = Path(out).expanduser()
    layers = sorted({int(layer) for layer in layers})
    lm = lm or LanguageModel.load(model)
    for layer in layers:
        lm.check_layer(layer)
    if texts_from < 0 or (max_texts is not None and max_texts < 0):
        raise InputError(f"texts_from / max_texts must be >= 0 (got {texts_from}, {max_texts})")
    identity = {
        "model": lm.name,
        "layers": layers,
        "d_in": lm.d_model,
        "corpus": str(Path(corpus).expanduser()),
        "split": split,
        "max_length": max_length,
        "dtype": "float16",
        "texts_from": int(texts_from),
    }
    manifest = {**identity, "shards": [], "texts_done": 0, "n_tokens": 0}
    if (out / MANIFEST).exists():
        old = read_manifest(out)
        have = {k: old.get(k, 0 if k == "texts_from" else None) for k in identity}  # caches before texts_from
        if have != identity:
            raise InputError(f"{out} holds a cache for {have}; asked for {identity}")
        manifest = {**old, "texts_from": int(texts_from)}
    texts = read_texts(corpus, split)[texts_from:]
    if max_texts is not None:
        texts = texts[:max_texts]
    n_tokens, start_tokens, t0 = manifest["n_tokens"], manifest["n_tokens"], time.time()
    bar = _bar(progress, max_tokens, n_tokens)
    while manifest["texts_done"] < len(texts) and (max_tokens is None or n_tokens < max_tokens):
        chunk = texts[manifest["texts_done"] : manifest["texts_done"] + shard_texts]
        parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        for batch in iter_lm_activations(lm, chunk, layers, max_length, batch_tokens, window=len(chunk)):
            for layer in layers:
                parts[layer].append(batch.acts[layer].to(torch.float16))
            if bar is not None:
                bar.update(len(batch.acts[layers[0]]))
        name = f"shard-{len(manifest['shards']):05d}.npy"
        n = 0
        for layer in layers:
            array = torch.cat(parts[layer]).numpy()
            n = len(array)
            _save_npy(out / f"layer{layer}" / name, array)
        manifest["shards"].append({"name": name, "n_tokens": n})
        manifest["texts_done"] += len(chunk)
        manifest["n_tokens"] = n_tokens = n_tokens + n
        _write_manifest(out, manifest)
        log.info("cached %s (%d tokens, %d total)", name, n, n_tokens)
    if bar is not None:
        bar.close()
    rate = (n_tokens - start_tokens) / max(time.time() - t0, 1e-9)
    return CacheSummary(out, n_tokens, len(manifest["shards"]), manifest["texts_done"], rate)


def write_activation_cache(
    out: str | Path, acts: dict[int, np.ndarray], shard_tokens: int = 65536, model: str = "synthetic", **info
) -> Path:
    """Write in-memory activations ({layer: [n, d_in]}, rows aligned) as a cache (tests, benchmarks, imports)."""
    out = Path(out).expanduser()
    layers = sorted(acts)
    n, d_in = acts[layers[0]].shape
    manifest = {
        "model": model,
        "layers": layers,
        "d_in": int(d_in),
        "corpus": None,
        "split": None,
        "max_length": None,
        "dtype": "float16",
        "shards": [],
        "texts_done": 0,
        "n_tokens": int(n),
        **info,
    }
    for i, start in enumerate(range(0, n, shard_tokens)):
        name = f"shard-{i:05d}.npy"
        for layer in layers:
            _save_npy(out / f"layer{layer}" / name, np.asarray(acts[layer][start : start + shard_tokens], np.float16))
        manifest["shards"].append({"name": name, "n_tokens": int(min(shard_tokens, n - start))})
    _write_manifest(out, manifest)
    return out


def _bar(progress: bool, total: int | None, initial: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="tok", unit_scale=True, desc="caching activations")


class ActivationCache:
    """Memory-mapped view of a cache: `layer_arrays(layer)` → list of float16 [n, d] arrays (one per shard)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.manifest = read_manifest(self.path)
        self.layers: list[int] = self.manifest["layers"]
        self.d_in: int = self.manifest["d_in"]
        self.shard_sizes = [s["n_tokens"] for s in self.manifest["shards"]]
        self.n_tokens = int(sum(self.shard_sizes))
        if self.n_tokens == 0:
            raise InputError(f"activation cache {self.path} is empty")

    def layer_arrays(self, layer: int) -> list[np.ndarray]:
        if layer not in self.layers:
            raise InputError(f"activation cache {self.path} has layers {self.layers}, not {layer}")
        return [np.load(self.path / f"layer{layer}" / s["name"], mmap_mode="r") for s in self.manifest["shards"]]
