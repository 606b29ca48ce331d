"""The background sample: what "ordinary text" looks like, for negatives, labels, densities and dashboards.

Default: a deterministic sample of the repo's demo corpus (`data/demo/corpus.jsonl`, 1500 Debian package
descriptions from 58 sections). Its activations are cached on disk per (SAE weights, layer, sample), because
reading a few hundred texts costs tens of seconds on a laptop CPU and every analysis command needs them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qscope.errors import InputError
from qscope.io import read_texts  # noqa: F401  (re-exported: qscope.analysis.read_texts)
from qscope.paths import qscope_home

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BACKGROUND = REPO_ROOT / "data" / "demo" / "corpus.jsonl"


def background_texts(n: int = 200, path: str | Path | None = None, seed: int = 0) -> list[str]:
    """A deterministic sample of `n` background texts (default: the demo corpus)."""
    path = Path(path) if path else DEFAULT_BACKGROUND
    if not path.exists():
        raise InputError(
            f"no background corpus at {path} (it ships with the qscope repository, data/demo/corpus.jsonl); "
            "pass negatives or a background file explicitly"
        )
    texts = read_texts(path)
    if n < len(texts):
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
        texts = [texts[i] for i in keep]
    return texts


def sae_fingerprint(sae) -> str:
    """Changes whenever the weights do (the interim and final shipped SAE share an id, not weights)."""
    h = hashlib.sha1(sae.sae_id.encode())
    for t in (sae.W_enc[:, :16], sae.b_enc, sae.W_dec[:16]):
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def background_activations(
    lm,
    sae,
    layer: int | None = None,
    texts: Sequence[str] | None = None,
    n: int = 200,
    max_length: int = 128,
    cache: bool = True,
):
    """`CorpusActivations` of the background sample, cached under `$QSCOPE_HOME/analysis/`."""
    from qscope.analysis.activations import CorpusActivations

    texts = list(texts) if texts is not None else background_texts(n)
    layer = sae.cfg.hook_layer if layer is None else layer
    key = hashlib.sha1(json.dumps([lm.name, sae_fingerprint(sae), layer, max_length, texts]).encode()).hexdigest()[:20]
    path = qscope_home() / "analysis" / f"background-{key}.npz"
    if cache and path.exists():
        try:
            return CorpusActivations.load(path)
        except Exception as exc:  # a stale or foreign file: recompute rather than fail
            log.warning("ignoring unreadable cache %s: %s", path, exc)
    acts = CorpusActivations.collect(lm, sae, texts, layer, max_length)
    if cache:
        acts.save(path)
    return acts
