"""Where training activations come from: an on-disk cache or the LM itself, both resumable exactly.

A source yields `{layer: float32 [batch_size, d_in]}` batches and has a tiny `state_dict()`: a checkpoint holds
(epoch, position) for the cache and (window, offset) for streaming, never activations, and resuming rebuilds the
same permutation / recomputes the same LM window, so the resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from qscope.training.cache import ActivationCache


def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class CacheSource:
    """Batches of rows drawn without replacement across all shards of one or several caches (new permutation each
    epoch). Several caches (`path` a list) are read as one: e.g. two caches filled in parallel over disjoint text
    ranges (`cache_activations(texts_from=...)`); they must hold the same model, layers and width."""

    def __init__(self, path, layers: Sequence[int], batch_size: int, seed: int = 0):
        from qscope.errors import InputError

        paths = [path] if isinstance(path, (str, bytes)) or not isinstance(path, Sequence) else list(path)
        if not paths:
            raise InputError("no activation cache given")
        self.caches = [ActivationCache(p) for p in paths]
        self.cache = self.caches[0]  # its manifest names the model (Trainer._model_name)
        for other in self.caches[1:]:
            if (other.manifest.get("model"), other.d_in) != (self.cache.manifest.get("model"), self.cache.d_in):
                raise InputError(
                    f"caches {self.cache.path} and {other.path} hold different models or widths: "
                    f"{self.cache.manifest.get('model')}/{self.cache.d_in} vs "
                    f"{other.manifest.get('model')}/{other.d_in}"
                )
        self.layers, self.batch_size, self.seed = list(layers), batch_size, seed
        self.arrays = {layer: [a for c in self.caches for a in c.layer_arrays(layer)] for layer in self.layers}
        self.d_in = self.cache.d_in
        self.n_tokens = sum(c.n_tokens for c in self.caches)
        self.starts = np.cumsum([0] + [n for c in self.caches for n in c.shard_sizes])
        self.epoch, self.position = 0, 0
        self._perm = _permutation(self.n_tokens, seed, 0)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._perm = _permutation(self.n_tokens, self.seed, self.epoch)

    def rows(self, index: torch.Tensor) -> dict[int, torch.Tensor]:
        """Gather global row ids from the memory-mapped shards (sorted per shard for sequential reads)."""
        index = np.sort(index.numpy())
        shard = np.searchsorted(self.starts, index, side="right") - 1
        out = {}
        for layer in self.layers:
            parts = [self.arrays[layer][s][index[shard == s] - self.starts[s]] for s in np.unique(shard)]
            out[layer] = torch.from_numpy(np.concatenate(parts).astype(np.float32))
        return out

    def sample(self, n: int, seed: int) -> dict[int, torch.Tensor]:
        """A random sample (for the normalization scale and b_dec), independent of the training order."""
        g = torch.Generator().manual_seed(seed + 7919)
        return self.rows(torch.randperm(self.n_tokens, generator=g)[: min(n, self.n_tokens)])

    def next_batch(self) -> dict[int, torch.Tensor]:
        take: list[torch.Tensor] = []
        need = self.batch_size
        while need:
            chunk = self._perm[self.position : self.position + need]
            take.append(chunk)
            need -= len(chunk)
            self.position += len(chunk)
            if self.position >= len(self._perm):  # epoch boundary: a fresh permutation
                self.epoch, self.position = self.epoch + 1, 0
                self._perm = _permutation(self.n_tokens, self.seed, self.epoch)
        # Rows come back shard-sorted; the order inside a batch does not matter for the loss.
        return self.rows(torch.cat(take))


class StreamingSource:
    """Runs the LM on windows of texts (truncated forward), shuffles each window's tokens, cycles the corpus."""

    def __init__(
        self,
        lm,
        texts: Sequence[str],
        layers: Sequence[int],
        batch_size: int,
        seed: int = 0,
        window: int = 512,
        max_length: int = 256,
        batch_tokens: int = 4096,
    ):
        from qscope.errors import InputError

        if not texts:
            raise InputError("streaming source: no texts")
        self.lm, self.texts, self.layers = lm, list(texts), sorted(layers)
        self.batch_size, self.seed, self.window = batch_size, seed, window
        self.max_length, self.batch_tokens = max_length, batch_tokens
        self.d_in = lm.d_model
        self.n_windows = (len(self.texts) + window - 1) // window
        self.window_index, self.offset = 0, 0
        self._buffer: dict[int, torch.Tensor] | None = None

    def state_dict(self) -> dict:
        return {"window": self.window_index, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.window_index, self.offset, self._buffer = int(state["window"]), int(state["offset"]), None

    def _fill(self) -> dict[int, torch.Tensor]:
        from qscope.training.activations import iter_lm_activations

        i = self.window_index % self.n_windows
        texts = self.texts[i * self.window : (i + 1) * self.window]
        parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        for batch in iter_lm_activations(
            self.lm, texts, self.layers, self.max_length, self.batch_tokens, window=len(texts)
        ):
            for layer in self.layers:
                parts[layer].append(batch.acts[layer])
        acts = {layer: torch.cat(p) for layer, p in parts.items()}
        # Tokens arrive length-sorted (bucketing) and document-contiguous: shuffle inside the window.
        perm = _permutation(len(acts[self.layers[0]]), self.seed, self.window_index)
        return {layer: a[perm] for layer, a in acts.items()}

    def sample(self, n: int, seed: int) -> dict[int, torch.Tensor]:
        """The first window's tokens (up to n): the scale estimate must not skip ahead in the corpus."""
        buf = self._fill() if self._buffer is None else self._buffer
        self._buffer = buf
        return {layer: a[:n] for layer, a in buf.items()}

    def next_batch(self) -> dict[int, torch.Tensor]:
        out: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        need = self.batch_size
        while need:
            if self._buffer is None:
                self._buffer = self._fill()
            avail = len(self._buffer[self.layers[0]]) - self.offset
            take = min(need, avail)
            for layer in self.layers:
                out[layer].append(self._buffer[layer][self.offset : self.offset + take])
            self.offset += take
            need -= take
            if self.offset >= len(self._buffer[self.layers[0]]):
                self.window_index, self.offset, self._buffer = self.window_index + 1, 0, None
        return {layer: torch.cat(p) for layer, p in out.items()}
