"""Steering overhead, side by side: steered / unsteered throughput per engine, and vLLM vs HF steered.

    python bench/steering.py [--engines hf,vllm] [--prompts 16] [--tokens 32] [--json]

Throughput = generated tokens / wall time of `engine.generate` (greedy, `ignore_eos` so every run does the same
work; unsteered and steered runs interleaved, best of `--repeats`; an untimed call warms each engine up).
Steered settings: `activate` (adds one vector: nearly free) and `activate+suppress` (suppress on a TopK SAE runs
the full SAE encoder on every token where the feature's pre-activation is > 0: the expensive case; with a random
SAE that is half the tokens, with a trained one far fewer). Goal: steered/unsteered >= 0.9 for vLLM.
The default SAE is used when shipped, else a random TopK SAE of the same shape (same cost).
CPU numbers on the development machines (2 cores, shared); rerun on a GPU machine for GPU numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import time

PROMPTS = [
    "Write a short poem about the sea.", "What is the capital of France?", "Explain photosynthesis simply.",
    "Give me three tips for learning to cook.", "Describe a busy train station.", "Why is the sky blue?",
    "Tell me a story about a lost dog.", "How do vaccines work?", "What makes a good friend?",
    "Summarize the plot of a heist movie.", "Describe your ideal weekend.", "How does a bicycle stay upright?",
    "Write a product review for headphones.", "What is machine learning?", "Describe a thunderstorm.",
    "Plan a picnic for four people.",
]


def load_sae(d_model: int):
    from qscope.sae import DEFAULT_SAE_ID, SAE, SAEConfig, load_sae, shipped_sae_ids

    if DEFAULT_SAE_ID in shipped_sae_ids():
        return load_sae(DEFAULT_SAE_ID)
    import torch

    torch.manual_seed(0)
    return SAE.from_config(SAEConfig(architecture="topk", d_in=d_model, d_sae=8192, k=32, hook_layer=15,
                                     sae_id="bench/random-topk", model_name="smollm2-135m"))


def throughput(engine, prompts, tokens: int, intervention) -> float:
    t = time.perf_counter()
    out = engine.generate(prompts, intervention=intervention, max_new_tokens=tokens, ignore_eos=True)
    return sum(len(r.token_ids) for r in out) / (time.perf_counter() - t)


def measure(engine, prompts, tokens: int, settings: dict, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` tok/s per setting, runs interleaved so background load hits all settings alike."""
    best = dict.fromkeys(settings, 0.0)
    for _ in range(repeats):
        for name, iv in settings.items():
            best[name] = max(best[name], throughput(engine, prompts, tokens, iv))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="hf,vllm")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (best is kept)")
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
    scales = {layer: {1: 10.0, 2: 10.0}}  # explicit scales: no calibration pass inside the timing
    settings = {"unsteered": None, "activate": activate(1, 2.0),
                "activate+suppress": activate(1, 2.0) + suppress(2, 1.0)}
    rows = {}
    for kind in args.engines.split(","):
        kw = dict(lm=lm, saes={layer: sae}, scales=scales)
        if kind == "hf":
            kw["batch_size"] = args.prompts
        engine = make_engine(kind, **kw)
        try:
            engine.generate(prompts[:2], intervention=settings["activate+suppress"], max_new_tokens=4)  # warm-up
            tps = measure(engine, prompts, args.tokens, settings, args.repeats)
        finally:
            engine.close()
        rows[kind] = {f"{name}_tok_s": round(v, 1) for name, v in tps.items()}
        rows[kind]["activate_ratio"] = round(tps["activate"] / tps["unsteered"], 3)
        rows[kind]["activate+suppress_ratio"] = round(tps["activate+suppress"] / tps["unsteered"], 3)
    result = {"device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_avg_1m": round(os.getloadavg()[0], 1), "prompts": args.prompts, "max_new_tokens": args.tokens,
              "sae": sae.sae_id, "engines": rows}
    if "hf" in rows and "vllm" in rows:
        result["vllm_over_hf_steered"] = {
            name: round(rows["vllm"][f"{name}_tok_s"] / rows["hf"][f"{name}_tok_s"], 3)
            for name in ("activate", "activate+suppress")
        }
    if args.json:
        print(json.dumps(result))
        return
    print(f"device {result['device']} ({result['cpus']} cores, load {result['load_avg_1m']}), "
          f"{args.prompts} prompts x {args.tokens} tokens, SAE {sae.sae_id}")
    print(f"{'engine':<7}{'unsteered tok/s':>16}{'activate tok/s':>16}{'ratio':>7}"
          f"{'act+suppress tok/s':>20}{'ratio':>7}")
    for kind, r in rows.items():
        print(f"{kind:<7}{r['unsteered_tok_s']:>16}{r['activate_tok_s']:>16}{r['activate_ratio']:>7}"
              f"{r['activate+suppress_tok_s']:>20}{r['activate+suppress_ratio']:>7}")
    if "vllm_over_hf_steered" in result:
        print(f"vLLM / HF steered throughput: {result['vllm_over_hf_steered']}")


if __name__ == "__main__":  # vLLM may spawn its engine process: the guard is required
    main()
