"""Steering overhead, side by side: steered / unsteered throughput per engine, and a mixed batch.

    python bench/steering.py [--engines hf,vllm] [--prompts 16] [--mixed-prompts 64] [--tokens 32] [--device cuda]

Throughput = generated tokens / wall time of `engine.generate` (greedy, `ignore_eos` so every run does the same
work; settings interleaved per round, medians over `--repeats` rounds, ratios paired within a round; an untimed
call warms each engine up).
Single-intervention settings (`--prompts` prompts, one intervention for all): `activate` (adds one vector: nearly
free), `activate+suppress` (suppress a typical feature) and `activate+suppress_dense` (the worst case: suppress
the feature that fires most often). Suppress on a TopK SAE needs each token's k-th largest pre-activation;
`LayerSteering.feature_acts` bounds it with 1/8 of the encoder and runs the full encoder only on tokens where the
feature can be in the top k, so its cost grows with the feature's density. Features are picked from the SAE's
codes on the bench prompts (ids change when the SAE is retrained): typical = median activation frequency among the
features that fire there, dense = most frequent.
Mixed batch (`--mixed-prompts` prompts, default 64): the prompts cycle through four different interventions and
none (one `generate` call with one intervention per prompt) against the same prompts unsteered; vLLM runs it as
one continuous batch, HF as one batch per intervention. Goal for vLLM: mixed / unsteered >= 0.9.
The default SAE is used when shipped, else a random TopK SAE of the same shape (same cost).
`--device cuda` runs both engines on the GPU (bf16 unless `--dtype`); the default is the CPU (float32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

PROMPTS = [
    "Write a short poem about the sea.",
    "What is the capital of France?",
    "Explain photosynthesis simply.",
    "Give me three tips for learning to cook.",
    "Describe a busy train station.",
    "Why is the sky blue?",
    "Tell me a story about a lost dog.",
    "How do vaccines work?",
    "What makes a good friend?",
    "Summarize the plot of a heist movie.",
    "Describe your ideal weekend.",
    "How does a bicycle stay upright?",
    "Write a product review for headphones.",
    "What is machine learning?",
    "Describe a thunderstorm.",
    "Plan a picnic for four people.",
]
STEERED = ("activate", "activate+suppress", "activate+suppress_dense")


def load_sae(d_model: int):
    from qscope.sae import DEFAULT_SAE_ID, SAE, SAEConfig, load_sae, shipped_sae_ids

    if DEFAULT_SAE_ID in shipped_sae_ids():
        return load_sae(DEFAULT_SAE_ID)
    import torch

    torch.manual_seed(0)
    return SAE.from_config(
        SAEConfig(
            architecture="topk",
            d_in=d_model,
            d_sae=8192,
            k=32,
            hook_layer=15,
            sae_id="bench/random-topk",
            model_name="smollm2-135m",
        )
    )


def pick_features(lm, sae, prompts) -> tuple[dict[str, int], dict[str, float], dict[int, dict[int, float]]]:
    """Features by how they fire on the prompts (position 0 excluded) + explicit scales (no calibration pass)."""
    import torch

    layer = sae.cfg.hook_layer
    res = lm.residuals(prompts, [layer])
    mask = res.attention_mask.bool().clone()
    mask[:, 0] = False
    with torch.no_grad():
        dense = sae.encode_dense(res.hidden[layer][mask].to(sae.W_enc.dtype))
    freq, peak = (dense > 0).sum(0), dense.max(0).values
    fired = freq.nonzero().squeeze(1)
    by_freq = fired[freq[fired].argsort(stable=True)]  # rarest first
    picks = {"suppress": int(by_freq[len(by_freq) // 2]), "suppress_dense": int(by_freq[-1])}
    rest = peak.clone()
    rest[list(picks.values())] = -1
    top = rest.topk(2).indices.tolist()
    picks["activate"], picks["activate_2"] = int(top[0]), int(top[1])  # the strongest others: ids that mean something
    fraction = {name: round(float(freq[f]) / int(mask.sum()), 3) for name, f in picks.items()}
    return picks, fraction, {layer: {f: float(peak[f]) for f in (picks["activate"], picks["activate_2"])}}


def mixed_interventions(picks: dict[str, int], n: int) -> list:
    """n per-prompt interventions cycling through four different ones and none (unsteered)."""
    from qscope.steering import activate, clamp, suppress

    kinds = [
        None,
        activate(picks["activate"], 2.0),
        activate(picks["activate_2"], 2.0, positions="generated"),
        activate(picks["activate"], 1.0) + suppress(picks["suppress"], 1.0),
        clamp(picks["activate_2"], 1.0, positions="generated"),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def throughput(engine, prompts, tokens: int, intervention) -> float:
    t = time.perf_counter()
    out = engine.generate(prompts, intervention=intervention, max_new_tokens=tokens, ignore_eos=True)
    return sum(len(r.token_ids) for r in out) / (time.perf_counter() - t)


def measure(engine, cases: dict, tokens: int, repeats: int, baseline: dict) -> tuple[dict, dict]:
    """Median tok/s per case and the median ratio to its baseline case over `repeats` rounds.

    cases: name -> (prompts, intervention or per-prompt list). Each round runs every case once (order rotated per
    round) and ratios pair runs of the same round, so slow drifts of the background load cancel out; medians
    ignore the rounds a load spike hit."""
    runs = {name: [] for name in cases}
    names = list(cases)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            prompts, iv = cases[name]
            runs[name].append(throughput(engine, prompts, tokens, iv))
    tps = {name: statistics.median(v) for name, v in runs.items()}
    ratios = {name: statistics.median(s / u for s, u in zip(runs[name], runs[base])) for name, base in baseline.items()}
    return tps, ratios


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="hf,vllm")
    p.add_argument("--prompts", type=int, default=16, help="prompts of the single-intervention settings")
    p.add_argument("--mixed-prompts", type=int, default=64, help="prompts of the mixed batch (0: skip it)")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (medians are reported)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--dtype", default=None, help="model dtype (default: float32 on cpu, bfloat16 on cuda)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for HF (default: torch's; use 1 when the cores are shared and overloaded)",
    )
    p.add_argument("--json", action="store_true")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from qscope.generation import make_engine
    from qscope.models import LanguageModel
    from qscope.steering import activate, suppress

    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    lm = LanguageModel.load(dtype=getattr(torch, dtype), device=args.device)
    sae = load_sae(lm.d_model).to(args.device)
    layer = sae.cfg.hook_layer
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    mixed_prompts = (PROMPTS * (args.mixed_prompts // len(PROMPTS) + 1))[: args.mixed_prompts]
    picks, fraction, scales = pick_features(lm, sae, prompts)
    cases = {
        "unsteered": (prompts, None),
        "activate": (prompts, activate(picks["activate"], 2.0)),
        "activate+suppress": (prompts, activate(picks["activate"], 2.0) + suppress(picks["suppress"], 1.0)),
        "activate+suppress_dense": (prompts, activate(picks["activate"], 2.0) + suppress(picks["suppress_dense"], 1.0)),
    }
    baseline = {name: "unsteered" for name in STEERED}
    if args.mixed_prompts:
        cases["unsteered_batch"] = (mixed_prompts, None)
        cases["mixed"] = (mixed_prompts, mixed_interventions(picks, len(mixed_prompts)))
        baseline["mixed"] = "unsteered_batch"
    rows, load_start = {}, os.getloadavg()[0]
    for kind in args.engines.split(","):
        kw = dict(lm=lm, saes={layer: sae}, scales=scales)
        if kind == "hf":
            kw["batch_size"] = max(args.prompts, args.mixed_prompts)
        else:
            kw["dtype"] = dtype
        engine = make_engine(kind, **kw)
        try:
            engine.generate(prompts[:2], intervention=cases["activate+suppress"][1], max_new_tokens=4)  # warm-up
            tps, ratios = measure(engine, cases, args.tokens, args.repeats, baseline)
        finally:
            engine.close()
        rows[kind] = {f"{name}_tok_s": round(v, 1) for name, v in tps.items()}
        rows[kind].update({f"{name}_ratio": round(v, 3) for name, v in ratios.items()})
        print(f"{kind}: {json.dumps(rows[kind])}", file=sys.stderr, flush=True)  # partial results of long runs
    result = {
        "device": "cpu" if args.device == "cpu" else torch.cuda.get_device_name(),
        "dtype": dtype,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": [round(load_start, 1), round(os.getloadavg()[0], 1)],
        "prompts": args.prompts,
        "mixed_prompts": args.mixed_prompts,
        "max_new_tokens": args.tokens,
        "sae": sae.sae_id,
        "features": picks,
        "features_active_fraction": fraction,
        "engines": rows,
    }
    if "hf" in rows and "vllm" in rows:
        result["vllm_over_hf"] = {
            name: round(rows["vllm"][f"{name}_tok_s"] / rows["hf"][f"{name}_tok_s"], 3)
            for name in (*STEERED, "mixed")
            if f"{name}_tok_s" in rows["vllm"]
        }
    print(json.dumps(result) if args.json else report(result, args))


def report(result: dict, args) -> str:
    lines = [
        f"device {result['device']} {result['dtype']} ({result['cpus']} cores, load "
        f"{result['load_avg_1m'][0]} -> {result['load_avg_1m'][1]}), {args.prompts} prompts x {args.tokens} "
        f"tokens, SAE {result['sae']}",
        f"features {result['features']}, fraction of prompt tokens where active {result['features_active_fraction']}",
        f"{'engine':<7}{'unsteered tok/s':>16}" + "".join(f"{n + ' tok/s':>30}{'ratio':>7}" for n in STEERED),
    ]
    for kind, r in result["engines"].items():
        lines.append(
            f"{kind:<7}{r['unsteered_tok_s']:>16}"
            + "".join(f"{r[n + '_tok_s']:>30}{r[n + '_ratio']:>7}" for n in STEERED)
        )
    for kind, r in result["engines"].items():
        if "mixed_tok_s" in r:
            lines.append(
                f"{kind:<7}mixed batch ({args.mixed_prompts} prompts: 4 interventions + unsteered, one call) "
                f"{r['mixed_tok_s']} tok/s vs the same prompts unsteered {r['unsteered_batch_tok_s']} "
                f"tok/s: mixed/unsteered {r['mixed_ratio']}"
            )
    if "vllm_over_hf" in result:
        lines.append(f"vLLM / HF throughput: {result['vllm_over_hf']}")
    return "\n".join(lines)


if __name__ == "__main__":  # vLLM may spawn its engine process: the guard is required
    main()
