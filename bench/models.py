"""Feature-extraction throughput of the two embedded models on the same texts: SmolLM2-135M vs Qwen2.5-Coder-0.5B.

Each model runs the path qscope uses to read features: truncated forward up to its SAE's layer (SmolLM2 layer 15 of
30, Qwen layer 12 of 24) plus the shipped SAE's encode on the real tokens. Same texts, same batches, interleaved
repeats (machine noise hits both alike); prints median tokens/s of each, texts/s, and the ratio. Token counts differ
per model (different tokenizers), so both tokens/s and texts/s are shown. Needs `make qwen`.

    .venv/bin/python bench/models.py [--docs 128] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from qscope.models import LanguageModel
from qscope.sae import default_sae_id, load_sae

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b")


def load_texts(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data/demo/corpus.jsonl").read_text().splitlines()]
    return [r["text"] for r in rows[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    texts = load_texts(args.docs)
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    setups = {}
    for name in MODELS:
        lm = LanguageModel.load(name, max_length=args.max_length)
        sae = load_sae(default_sae_id(name))
        n_tokens = sum(int(lm.tokenize(b)[0]["attention_mask"].sum()) for b in batches)
        setups[name] = (lm, sae, sae.cfg.hook_layer, n_tokens)

    def run(name: str) -> float:
        lm, sae, layer, n_tokens = setups[name]
        t0 = time.perf_counter()
        for batch in batches:
            res = lm.residuals(batch, [layer])
            sae.encode(res.hidden[layer][res.attention_mask.bool()])
        return n_tokens / (time.perf_counter() - t0)

    with torch.inference_mode():
        for name in MODELS:
            run(name)  # warm-up
        rates = {name: [] for name in MODELS}
        for _ in range(args.repeats):
            for name in MODELS:
                rates[name].append(run(name))
    print(
        f"{len(texts)} docs (data/demo/corpus.jsonl), batch {args.batch}, max_length {args.max_length}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'model':<20} {'layer':>9} {'tokens':>7} {'median tok/s':>13} {'texts/s':>8} {'min':>7} {'max':>7}")
    med = {}
    for name in MODELS:
        lm, _, layer, n_tokens = setups[name]
        med[name] = statistics.median(rates[name])
        print(
            f"{name:<20} {f'{layer}/{lm.n_layers}':>9} {n_tokens:>7} {med[name]:>13.0f} "
            f"{med[name] * len(texts) / n_tokens:>8.1f} {min(rates[name]):>7.0f} {max(rates[name]):>7.0f}"
        )
    small, qwen = MODELS
    texts_ratio = (med[small] / setups[small][3]) / (med[qwen] / setups[qwen][3])
    print(f"ratio {small} / {qwen}: {med[small] / med[qwen]:.2f}x tokens/s, {texts_ratio:.2f}x texts/s")


if __name__ == "__main__":
    main()
