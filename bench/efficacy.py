"""Few-shot classification / mining efficacy: qscope signature methods vs TF-IDF+LR, hidden-state LR, DiffMean.

Datasets (real, labeled, offline):
- sae-probes tasks (agnews world / sports, news technology, spam, python code): N positive + N negative labeled
  seeds drawn from a seed pool, scored on a disjoint balanced test set ("classify" setting).
- Debian demo (data/demo): N hamradio seeds from seeds.jsonl, mine the corpus (60 hamradio hidden among the others):
  only positives are labeled ("mine" setting; methods that need negatives use random corpus rows as background).

For each dataset, N in {4, 16, 64} (capped by the seed pool) and >= 5 seed draws: AUROC, AUPRC, P@k (k = number of
test positives, i.e. R-precision, plus P@10). All methods read the same layer-15 residuals (`lm.residuals`, position 0,
special tokens and padding excluded), cached under ~/.cache/qscope/bench/ so reruns and a new SAE cost seconds.

    python bench/efficacy.py --quick          # < 5 min once the residual cache exists
    python bench/efficacy.py                  # all datasets, N in {4,16,64}, 10 draws
    python bench/efficacy.py --encode-only    # fill the residual cache (slow: the LM forward on CPU)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("QSCOPE_HOME", Path.home() / ".cache" / "qscope")).expanduser() / "bench"
LAYER = 15
MAX_TOKENS = 64  # texts are cut to 64 tokens: the CPU forward is the bottleneck here (~75-300 tok/s when shared)

PROBE_TASKS = {
    "agnews_world": "161_agnews_0",
    "agnews_sports": "162_agnews_1",
    "news_tech": "140_news_class_Technology",
    "spam": "96_spam_is",
    "code_python": "159_code_Python",
}
SEED_POOL_PER_CLASS = 80
TEST_PER_CLASS = 120


# --------------------------------------------------------------------------------------------- datasets
def load_dataset(name: str) -> dict:
    """{texts, labels (0/1), seed_pool (indices), test (indices), setting} — deterministic."""
    rng = np.random.default_rng(0)
    if name == "debian_hamradio":
        seeds = [json.loads(x) for x in open(REPO / "data/demo/seeds.jsonl")]
        corpus = [json.loads(x) for x in open(REPO / "data/demo/corpus.jsonl")]
        pos = [r for r in corpus if r["section"] == "hamradio"]
        neg = [r for r in corpus if r["section"] != "hamradio"]
        neg = [neg[i] for i in sorted(rng.choice(len(neg), 540, replace=False))]
        test = pos + neg
        texts = [r["text"] for r in seeds] + [r["text"] for r in test]
        labels = np.array([1] * len(seeds) + [1] * len(pos) + [0] * len(neg))
        return dict(texts=texts, labels=labels, seed_pool=np.arange(len(seeds)),
                    test=np.arange(len(seeds), len(texts)), setting="mine")
    from qscope.data.probes import read_task

    rows = read_task(PROBE_TASKS[name])
    y = np.array([1 if r["label"] in ("1", "True", "true") else 0 for r in rows])
    n = SEED_POOL_PER_CLASS + TEST_PER_CLASS
    pos = rng.permutation(np.flatnonzero(y == 1))[:n]
    neg = rng.permutation(np.flatnonzero(y == 0))[:n]
    pick = np.concatenate([pos[:SEED_POOL_PER_CLASS], neg[:SEED_POOL_PER_CLASS],
                           pos[SEED_POOL_PER_CLASS:], neg[SEED_POOL_PER_CLASS:]])
    texts = [rows[i]["text"] for i in pick]
    k = 2 * SEED_POOL_PER_CLASS
    return dict(texts=texts, labels=y[pick], seed_pool=np.arange(k), test=np.arange(k, len(pick)),
                setting="classify")


# --------------------------------------------------------------------------------------------- residual cache
def _cache_file(name: str, texts: list[str], model: str) -> Path:
    h = hashlib.sha1(("\n\0".join(texts) + f"|{model}|{LAYER}|{MAX_TOKENS}").encode()).hexdigest()[:12]
    return CACHE / f"{name}-L{LAYER}-T{MAX_TOKENS}-{h}.npz"


def encode_residuals(name: str, texts: list[str], lm=None, batch_size: int = 16) -> dict:
    """Per-token residuals (fp16, content tokens only) + per-text offsets + fp32 mean-pooled hidden states.

    Work is checkpointed per chunk of 64 texts so an interrupted run resumes where it stopped.
    """
    from qscope.models.resolve import DEFAULT_MODEL

    final = _cache_file(name, texts, DEFAULT_MODEL)
    if final.exists():
        z = np.load(final)
        return {k: z[k] for k in z.files}
    import torch

    from qscope.models import LanguageModel

    lm = lm or LanguageModel.load()
    special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)))
    parts_dir = final.with_suffix(".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    chunk = 64
    t0 = time.time()
    for c0 in range(0, len(texts), chunk):
        part = parts_dir / f"{c0:06d}.npz"
        if part.exists():
            continue
        toks, lens, means = [], [], []
        for b0 in range(c0, min(c0 + chunk, len(texts)), batch_size):
            batch = texts[b0: min(b0 + batch_size, c0 + chunk, len(texts))]
            res = lm.residuals(batch, [LAYER], max_length=MAX_TOKENS)
            keep = res.attention_mask.bool().clone()
            keep[:, 0] = False  # attention sink
            keep &= ~torch.isin(res.input_ids, special)
            h = res.hidden[LAYER].float()
            for i in range(len(batch)):
                hi = h[i][keep[i]]
                if len(hi) == 0:  # a text of only special tokens: keep one row so pooling is defined
                    hi = h[i][res.attention_mask[i].bool()][-1:]
                toks.append(hi.half().numpy())
                lens.append(len(hi))
                means.append(hi.mean(0).numpy())
        tmp = part.with_suffix(".tmp.npz")
        np.savez(tmp, toks=np.concatenate(toks), lens=np.array(lens), means=np.stack(means))
        os.replace(tmp, part)
        done = min(c0 + chunk, len(texts))
        print(f"  [{name}] encoded {done}/{len(texts)} texts ({time.time() - t0:.0f}s)", flush=True)
    parts = [np.load(p) for p in sorted(parts_dir.glob("*.npz")) if not p.name.endswith(".tmp.npz")]
    lens = np.concatenate([p["lens"] for p in parts])
    out = dict(toks=np.concatenate([p["toks"] for p in parts]), offsets=np.concatenate([[0], np.cumsum(lens)]),
               means=np.concatenate([p["means"] for p in parts]).astype(np.float32))
    tmp = final.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, final)
    for p in parts_dir.glob("*"):
        p.unlink()
    parts_dir.rmdir()
    return out


def main_encode(names: list[str]) -> None:
    import torch

    from qscope.models import LanguageModel

    torch.set_num_threads(2)
    lm = LanguageModel.load()
    for name in names:
        ds = load_dataset(name)
        encode_residuals(name, ds["texts"], lm)


ALL = ["agnews_world", "news_tech", "spam", "debian_hamradio", "code_python", "agnews_sports"]

if __name__ == "__main__" and "--encode-only" in sys.argv:
    main_encode([a for a in sys.argv[1:] if not a.startswith("--")] or ALL)
