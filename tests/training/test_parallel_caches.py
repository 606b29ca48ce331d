"""Caches filled over disjoint text ranges (`texts_from` / `max_texts`) and read as one (`cache: [a, b]`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qscope.errors import InputError
from qscope.training import ActivationCache, Trainer, cache_activations, write_activation_cache
from qscope.training.sources import CacheSource

LAYER = 3


def _rows(source: CacheSource, n: int) -> np.ndarray:
    out = [source.next_batch()[LAYER].numpy() for _ in range(n // source.batch_size)]
    return np.concatenate(out)


def _sorted(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def test_two_caches_read_as_one_epoch_covers_every_row_once(synthetic, tmp_path):
    x = np.concatenate([a for a in ActivationCache(synthetic["train"]).layer_arrays(LAYER)])[:20_480].astype(np.float32)
    a = write_activation_cache(tmp_path / "a", {LAYER: x[:12_288]}, shard_tokens=5_000)
    b = write_activation_cache(tmp_path / "b", {LAYER: x[12_288:]}, shard_tokens=5_000)
    source = CacheSource([str(a), str(b)], [LAYER], batch_size=1024, seed=0)
    assert source.n_tokens == len(x) and source.d_in == x.shape[1]
    seen = _rows(source, len(x))
    np.testing.assert_array_equal(_sorted(seen), _sorted(x.astype(np.float16).astype(np.float32)))
    assert source.epoch == 1 and source.position == 0


def test_caches_of_different_widths_are_refused(tmp_path):
    a = write_activation_cache(tmp_path / "a", {LAYER: np.zeros((64, 8), np.float32)})
    b = write_activation_cache(tmp_path / "b", {LAYER: np.zeros((64, 16), np.float32)})
    with pytest.raises(InputError, match="different models or widths"):
        CacheSource([str(a), str(b)], [LAYER], batch_size=32)


def test_trainer_takes_a_list_of_caches_and_resumes(synthetic, make_config, tmp_path):
    x = np.concatenate([a for a in ActivationCache(synthetic["train"]).layer_arrays(LAYER)]).astype(np.float32)
    half = len(x) // 2
    caches = [
        str(write_activation_cache(tmp_path / n, {LAYER: part})) for n, part in (("a", x[:half]), ("b", x[half:]))
    ]
    full = Trainer(make_config(cache=caches, max_tokens=256 * 40, out=str(tmp_path / "full"))).fit(export=False)
    first = Trainer(make_config(cache=caches, max_tokens=256 * 40, out=str(tmp_path / "paused")))
    first.fit(export=False, stop_at=15)
    resumed = Trainer(make_config(cache=caches, max_tokens=256 * 40, out=str(tmp_path / "paused"))).fit(
        resume=True, export=False
    )
    assert resumed.steps == full.steps == 40
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["saes"][str(LAYER)]
    b = torch.load(tmp_path / "paused" / "checkpoint.pt", weights_only=True)["saes"][str(LAYER)]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    texts = [
        f"Package {i}: a tool that {w} files quickly and safely."
        for i, w in enumerate(
            ["copies", "moves", "renames", "lists", "checks", "zips", "hashes", "syncs", "signs", "finds"]
        )
    ]
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_ranges_partition_the_split(lm, corpus, tmp_path):
    whole = cache_activations(tmp_path / "whole", corpus, [LAYER], split=None, lm=lm, shard_texts=4, progress=False)
    first = cache_activations(
        tmp_path / "a", corpus, [LAYER], split=None, lm=lm, shard_texts=4, progress=False, max_texts=6
    )
    second = cache_activations(
        tmp_path / "b", corpus, [LAYER], split=None, lm=lm, shard_texts=4, progress=False, texts_from=6
    )
    assert (first.texts_done, second.texts_done, whole.texts_done) == (6, 4, 10)
    assert first.n_tokens + second.n_tokens == whole.n_tokens
    parts = CacheSource([str(tmp_path / "a"), str(tmp_path / "b")], [LAYER], batch_size=1)
    one = CacheSource(str(tmp_path / "whole"), [LAYER], batch_size=1)
    every = torch.arange(whole.n_tokens)
    # Same tokens (texts are batched differently, so allow float16 rounding of slightly different float32 sums).
    torch.testing.assert_close(parts.rows(every)[LAYER].sum(0), one.rows(every)[LAYER].sum(0), rtol=2e-3, atol=0.5)


def test_a_range_cache_resumes_only_with_the_same_start(lm, corpus, tmp_path):
    cache_activations(
        tmp_path / "b", corpus, [LAYER], split=None, lm=lm, shard_texts=4, progress=False, texts_from=6, max_texts=2
    )
    again = cache_activations(
        tmp_path / "b", corpus, [LAYER], split=None, lm=lm, shard_texts=4, progress=False, texts_from=6
    )
    assert again.texts_done == 4 and again.n_shards == 2  # resumed after the first shard
    with pytest.raises(InputError, match="holds a cache for"):
        cache_activations(
            tmp_path / "b", corpus, [LAYER], split=None, lm=lm, shard_texts=4, progress=False, texts_from=5
        )
    with pytest.raises(InputError, match=">= 0"):
        cache_activations(tmp_path / "c", corpus, [LAYER], split=None, lm=lm, texts_from=-1, progress=False)


def test_command_line_fills_a_range(corpus, tmp_path, capsys):
    from qscope.training.build_cache import main

    assert main([str(tmp_path / "c"), str(corpus), "--layers", str(LAYER), "--split", "", "--texts-from", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["texts_done"] == 2 and out["n_tokens"] > 0
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["texts_from"] == 8
