"""Steering overhead, side by side: steered / unsteered throughput per engine, and vLLM vs HF steered.

    python bench/steering.py [--engines hf,vllm] [--prompts 16] [--tokens 32] [--json]

Throughput = generated tokens / wall time of `engine.generate` (greedy, `ignore_eos` so every run does the same
work; settings interleaved per round, medians over `--repeats` rounds, ratios paired within a round; an untimed
call warms each engine up).
Steered settings: `activate` (adds one vector: nearly free), `activate+suppress` (suppress a typical feature)
and `activate+suppress_dense` (the worst case: suppress the feature that fires most often). Suppress on a TopK SAE
needs each token's k-th largest pre-activation; `LayerSteering.feature_acts` bounds it with 1/8 of the encoder
and runs the full encoder only on tokens where the feature can be in the top k, so its cost grows with the
feature's density. Features are picked from the SAE's codes on the bench prompts (ids change when the SAE is
retrained): typical = median activation frequency among the features that fire there, dense = most frequent.
Goal: steered/unsteered >= 0.9 for vLLM.
The default SAE is used when shipped, else a random TopK SAE of the same shape (same cost).
CPU numbers on the development machines (2 cores, shared); rerun on a GPU machine for GPU numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

PROMPTS = [
    "Write a short poem about the sea.", "What is the capital of France?", "Explain photosynthesis simply.",
    "Give me three tips for learning to cook.", "Describe a busy train station.", "Why is the sky blue?",
    "Tell me a story about a lost dog.", "How do vaccines work?", "What makes a good friend?",
    "Summarize the plot of a heist movie.", "Describe your ideal weekend.", "How does a bicycle stay upright?",
    "Write a product review for headphones.", "What is machine learning?", "Describe a thunderstorm.",
    "Plan a picnic for four people.",
]


STEERED = ("activate", "activate+suppress", "activate+suppress_dense")


def load_sae(d_model: int):
    from qscope.sae import DEFAULT_SAE_ID, SAE, SAEConfig, load_sae, shipped_sae_ids

    if DEFAULT_SAE_ID in shipped_sae_ids():
        return load_sae(DEFAULT_SAE_ID)
    import torch

    torch.manual_seed(0)
    return SAE.from_config(SAEConfig(architecture="topk", d_in=d_model, d_sae=8192, k=32, hook_layer=15,
                                     sae_id="bench/random-topk", model_name="smollm2-135m"))


def pick_features(lm, sae, prompts) -> tuple[dict[str, int], dict[str, float], dict[int, dict[int, float]]]:
    """Features by how they fire on the prompts (position 0 excluded) + explicit scales (no calibration pass)."""
    import torch

    layer = sae.cfg.hook_layer
    res = lm.residuals(prompts, [layer])
    mask = res.attention_mask.bool().clone()
    mask[:, 0] = False
    with torch.no_grad():
        dense = sae.encode_dense(res.hidden[layer][mask])
    freq, peak = (dense > 0).sum(0), dense.max(0).values
    fired = freq.nonzero().squeeze(1)
    by_freq = fired[freq[fired].argsort(stable=True)]  # rarest first
    picks = {"suppress": int(by_freq[len(by_freq) // 2]), "suppress_dense": int(by_freq[-1])}
    rest = peak.clone()
    rest[list(picks.values())] = -1
    picks["activate"] = int(rest.argmax())  # the strongest other feature: an id that means something
    fraction = {name: round(float(freq[f]) / int(mask.sum()), 3) for name, f in picks.items()}
    return picks, fraction, {layer: {picks["activate"]: float(peak[picks["activate"]])}}


def throughput(engine, prompts, tokens: int, intervention) -> float:
    t = time.perf_counter()
    out = engine.generate(prompts, intervention=intervention, max_new_tokens=tokens, ignore_eos=True)
    return sum(len(r.token_ids) for r in out) / (time.perf_counter() - t)


def measure(engine, prompts, tokens: int, settings: dict, repeats: int) -> tuple[dict, dict]:
    """Median tok/s per setting and median steered/unsteered ratio over `repeats` rounds.

    Each round runs every setting once (order rotated per round) and ratios pair runs of the same round, so slow
    drifts of the background load cancel out; medians ignore the rounds a load spike hit.
    """
    runs = {name: [] for name in settings}
    names = list(settings)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            runs[name].append(throughput(engine, prompts, tokens, settings[name]))
    tps = {name: statistics.median(v) for name, v in runs.items()}
    ratios = {name: statistics.median(s / u for s, u in zip(runs[name], runs["unsteered"]))
              for name in settings if name != "unsteered"}
    return tps, ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="hf,vllm")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (medians are reported)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for HF (default: torch's; use 1 when the cores are shared and overloaded)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from qscope.generation import make_engine
    from qscope.models import LanguageModel
    from qscope.steering import activate, suppress

    lm = LanguageModel.load()
    sae = load_sae(lm.d_model)
    layer = sae.cfg.hook_layer
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    picks, fraction, scales = pick_features(lm, sae, prompts)
    settings = {"unsteered": None, "activate": activate(picks["activate"], 2.0),
                "activate+suppress": activate(picks["activate"], 2.0) + suppress(picks["suppress"], 1.0),
                "activate+suppress_dense": activate(picks["activate"], 2.0) + suppress(picks["suppress_dense"], 1.0)}
    rows = {}
    load_start = os.getloadavg()[0]
    for kind in args.engines.split(","):
        kw = dict(lm=lm, saes={layer: sae}, scales=scales)
        if kind == "hf":
            kw["batch_size"] = args.prompts
        engine = make_engine(kind, **kw)
        try:
            engine.generate(prompts[:2], intervention=settings["activate+suppress"], max_new_tokens=4)  # warm-up
            tps, ratios = measure(engine, prompts, args.tokens, settings, args.repeats)
        finally:
            engine.close()
        rows[kind] = {f"{name}_tok_s": round(v, 1) for name, v in tps.items()}
        for name in STEERED:
            rows[kind][f"{name}_ratio"] = round(ratios[name], 3)
    result = {"device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_avg_1m": [round(load_start, 1), round(os.getloadavg()[0], 1)], "prompts": args.prompts, "max_new_tokens": args.tokens,
              "sae": sae.sae_id, "features": picks,
              "features_active_fraction": fraction, "engines": rows}
    if "hf" in rows and "vllm" in rows:
        result["vllm_over_hf_steered"] = {
            name: round(rows["vllm"][f"{name}_tok_s"] / rows["hf"][f"{name}_tok_s"], 3)
            for name in STEERED
        }
    if args.json:
        print(json.dumps(result))
        return
    print(f"device {result['device']} ({result['cpus']} cores, load {result['load_avg_1m'][0]} -> {result['load_avg_1m'][1]}), "
          f"{args.prompts} prompts x {args.tokens} tokens, SAE {sae.sae_id}")
    print(f"features {picks}, fraction of prompt tokens where active {fraction}")
    print(f"{'engine':<7}{'unsteered tok/s':>16}" + "".join(f"{name + ' tok/s':>30}{'ratio':>7}" for name in STEERED))
    for kind, r in rows.items():
        print(f"{kind:<7}{r['unsteered_tok_s']:>16}"
              + "".join(f"{r[name + '_tok_s']:>30}{r[name + '_ratio']:>7}" for name in STEERED))
    if "vllm_over_hf_steered" in result:
        print(f"vLLM / HF steered throughput: {result['vllm_over_hf_steered']}")


if __name__ == "__main__":  # vLLM may spawn its engine process: the guard is required
    main()
