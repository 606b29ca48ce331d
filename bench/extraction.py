"""Feature-extraction throughput: truncated forward (stop after the hook layer) vs full forward, side by side.

Same texts, same batches, interleaved repeats; prints median tokens/s of each and their ratio.
    .venv/bin/python bench/extraction.py [--layer 15] [--docs 128] [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from qscope.models import LanguageModel

ROOT = Path(__file__).resolve().parents[1]


def load_texts(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data/demo/corpus.jsonl").read_text().splitlines()]
    return [r["text"] for r in rows[:n]]


def tokens_per_second(fn, batches, n_tokens: int) -> float:
    t0 = time.perf_counter()
    for batch in batches:
        fn(batch)
    return n_tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--docs", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sae", default=None, help="also time SAE encoding (shipped id or path)")
    args = ap.parse_args()

    lm = LanguageModel.load(max_length=args.max_length)
    texts = load_texts(args.docs)
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    n_tokens = sum(int(lm.tokenize(b)[0]["attention_mask"].sum()) for b in batches)
    sae = None
    if args.sae:
        from qscope.sae import load_sae

        sae = load_sae(args.sae)

    def truncated(batch):
        res = lm.residuals(batch, [args.layer])
        if sae is not None:
            sae.encode(res.hidden[args.layer][res.attention_mask.bool()])

    def full(batch):
        hs = lm.full_hidden_states(batch)
        if sae is not None:
            enc, _ = lm.tokenize(batch)
            sae.encode(hs[args.layer + 1][enc["attention_mask"].bool()])

    with torch.inference_mode():
        truncated(batches[0]), full(batches[0])  # warm-up
        runs = {"truncated": [], "full": []}
        for _ in range(args.repeats):  # interleaved so machine noise hits both alike
            runs["truncated"].append(tokens_per_second(truncated, batches, n_tokens))
            runs["full"].append(tokens_per_second(full, batches, n_tokens))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"model {lm.name}: {lm.n_layers} layers, hook layer {args.layer}, {len(texts)} docs, {n_tokens} tokens, "
        f"batch {args.batch}, torch threads {torch.get_num_threads()}, SAE {'yes' if sae else 'no'}"
    )
    print(f"{'path':<10} {'median tok/s':>13} {'min':>9} {'max':>9}")
    for k, v in runs.items():
        print(f"{k:<10} {med[k]:>13.0f} {min(v):>9.0f} {max(v):>9.0f}")
    print(f"ratio truncated/full: {med['truncated'] / med['full']:.2f}x")


if __name__ == "__main__":
    main()
