"""Steering toward code: does activating a discovered "code" feature make non-code prompts produce code?

1. `FeatureExplorer.discover_top_features("code generation")` on the SAE (default: the Qwen SAE) names candidates.
2. Selection, on *dev* prompts only: every candidate x strength is generated greedily; the pair with the highest
   code fraction whose mean perplexity stays within `--ppl-factor` x unsteered wins (ties: the smaller strength).
3. Report, on separate *test* prompts (never used for selection): code fraction unsteered vs steered, mean
   perplexity of both (each continuation scored by the unsteered model given its prompt), and sample outputs.

Code rule (`looks_like_code`): the output holds a ``` fence, or a run of >= 2 consecutive non-empty lines that
`ast.parse`s as Python and contains a statement other than an expression without a call (so "Paris." or "- a / - b" do
not count, while `x = f(1)` / `def f():` / `import os` / `print(x)` do), or one line that parses as a def / class /
import / call / assignment and has a code token (`(`, `=`, `:` or `import`).

    .venv/bin/python bench/code_steering.py [--sae qwen2.5-coder-0.5b-l12] [--json out.json]
    .venv/bin/python bench/code_steering.py --pos code.jsonl --neg prose.jsonl   # discover from examples instead
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
import textwrap
import time
from pathlib import Path

try:
    import qscope  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qscope.steering.intervention import POSITIONS

DEV_PROMPTS = [
    "Describe your ideal weekend.",
    "What makes a good cup of tea?",
    "Tell me about the history of the bicycle.",
    "Why do leaves change colour in autumn?",
    "Give me three tips for a job interview.",
    "What is the difference between weather and climate?",
]
TEST_PROMPTS = [
    "Explain quantum computing.",
    "Write a short poem about the sea.",
    "What is the capital of France?",
    "Describe a sunny day at the beach.",
    "What are the benefits of drinking water?",
    "Tell me a fun fact about elephants.",
    "How do I make a good first impression?",
    "Summarize the plot of Romeo and Juliet.",
    "Why is the sky blue?",
    "What should I pack for a camping trip?",
    "Give me advice on learning to play the guitar.",
    "Describe the taste of a ripe mango.",
    "What is photosynthesis?",
    "Recommend a good habit for better sleep.",
    "Explain how a rainbow forms.",
    "What are the main causes of the French Revolution?",
    "Write a thank-you note to a friend.",
    "How do bees make honey?",
    "What is the best way to learn a new language?",
    "Describe the city of Paris in spring.",
    "Why do cats purr?",
    "What is inflation in economics?",
]
# Expression statements count as code only when they call something: prose like "- a\n- b" or "x and y" parses
# as unary / boolean expressions of names.
_CODE_EXPR = (ast.Call, ast.Await, ast.Lambda, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp)
_CODE_TOKEN = re.compile(r"[(=:]|\bimport\b")


def _meaningful(tree: ast.Module) -> bool:
    return any(not isinstance(node, ast.Expr) or isinstance(node.value, _CODE_EXPR) for node in tree.body)


def _parses(src: str) -> ast.Module | None:
    try:
        return ast.parse(src)
    except (SyntaxError, ValueError):
        return None


def looks_like_code(text: str) -> bool:
    """The rule in the module docstring: a fence, >= 2 parseable non-trivial lines, or one clearly-code line."""
    if "```" in text:
        return True
    lines = [line for line in text.splitlines() if line.strip()]
    for i in range(len(lines)):
        for j in range(i + 2, min(len(lines), i + 12) + 1):
            src = "\n".join(lines[i:j])
            tree = _parses(textwrap.dedent(src))
            if tree is not None and _meaningful(tree):
                return True
    for line in lines:
        tree = _parses(line.strip())
        if (
            tree is not None
            and _CODE_TOKEN.search(line)
            and any(
                isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Assign, ast.AugAssign))
                or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Call))
                for n in tree.body
            )
        ):
            return True
    return False


def generate(engine, prompts, intervention, max_new_tokens):
    return engine.generate(prompts, intervention=intervention, max_new_tokens=max_new_tokens)


def measure(engine, lm, prompts, intervention, max_new_tokens) -> dict:
    from qscope.steering.sweep import continuation_perplexity

    results = generate(engine, prompts, intervention, max_new_tokens)
    texts = [r.text for r in results]
    ppl = continuation_perplexity(lm, [r.prompt_token_ids for r in results], [r.token_ids for r in results])
    finite = [p for p in ppl if math.isfinite(p)]
    return {
        "code_fraction": sum(map(looks_like_code, texts)) / len(texts),
        "perplexity": sum(finite) / len(finite) if finite else float("nan"),
        "texts": texts,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sae", default="qwen2.5-coder-0.5b-l12")
    p.add_argument("--concept", default="code generation")
    p.add_argument("--candidates", type=int, default=3, help="top discovered features tried on the dev prompts")
    p.add_argument("--strengths", default="1,2,4", help="strengths tried (1.0 = the feature's typical max)")
    p.add_argument("--ppl-factor", type=float, default=2.0)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=11)
    p.add_argument("--json", default=None, help="write the full result here")
    p.add_argument(
        "--pos",
        default=None,
        help="discover from these example texts (JSONL, 'text') instead of the concept phrase: e.g. real code",
    )
    p.add_argument("--neg", default=None, help="negatives for --pos (JSONL; default: the explorer's background)")
    p.add_argument("--combine", action="store_true", help="also steer the top --candidates features together")
    p.add_argument("--positions", default="all", choices=list(POSITIONS), help="where the steering applies")
    args = p.parse_args(argv)

    import torch

    from qscope.generation import make_engine
    from qscope.quickstart import FeatureExplorer, SAEModel
    from qscope.steering import Intervention

    torch.manual_seed(0)
    t0 = time.time()
    model = SAEModel.from_pretrained(args.sae)
    layer = model.layers[0]
    explorer = FeatureExplorer(model, layer=layer)
    if args.pos:
        from qscope.io import read_texts

        pos, neg = read_texts(args.pos), (read_texts(args.neg) if args.neg else None)
        features = explorer.discover_top_features(examples=pos, negatives=neg, top=max(args.candidates, 5))
        print(
            f"[{time.time() - t0:.0f}s] discover_top_features(examples={args.pos} ({len(pos)} texts), "
            f"negatives={args.neg}):"
        )
    else:
        features = explorer.discover_top_features(args.concept, top=max(args.candidates, 5))
        print(f"[{time.time() - t0:.0f}s] discover_top_features({args.concept!r}):")
    for f in features:
        print(f"  {f!r}")
    engine = make_engine("hf", lm=model.lm, saes=model.saes, batch_size=args.batch_size)
    strengths = [float(s) for s in args.strengths.split(",")]

    base_dev = measure(engine, model.lm, DEV_PROMPTS, None, args.max_new_tokens)
    print(
        f"[{time.time() - t0:.0f}s] dev unsteered: code {base_dev['code_fraction']:.2f} "
        f"ppl {base_dev['perplexity']:.2f}"
    )
    grid = []
    # A candidate is one feature, or (--combine) the top ones together: a concept often spreads over several.
    sets = [[int(f)] for f in features[: args.candidates]]
    if args.combine and args.candidates > 1:
        sets.append([int(f) for f in features[: args.candidates]])

    def steer(ids, s):
        iv = Intervention()
        for i in ids:
            iv = iv.activate(i, s, layer=layer, positions=args.positions)
        return iv

    for ids in sets:
        for s in strengths:
            m = measure(engine, model.lm, DEV_PROMPTS, steer(ids, s), args.max_new_tokens)
            ok = m["perplexity"] <= args.ppl_factor * base_dev["perplexity"]
            grid.append(
                {
                    "feature": ids[0] if len(ids) == 1 else ids,
                    "strength": s,
                    "code_fraction": m["code_fraction"],
                    "perplexity": m["perplexity"],
                    "within_bound": ok,
                }
            )
            print(
                f"[{time.time() - t0:.0f}s] dev feature {'+'.join(map(str, ids))} strength {s:g}: code "
                f"{m['code_fraction']:.2f} ppl {m['perplexity']:.2f}{'' if ok else ' (over bound)'}"
            )
    eligible = [g for g in grid if g["within_bound"]]
    if not eligible:
        print("no feature/strength kept perplexity within the bound on the dev prompts")
        return 1
    best = max(eligible, key=lambda g: (g["code_fraction"], -g["strength"]))
    iv = steer(best["feature"] if isinstance(best["feature"], list) else [best["feature"]], best["strength"])
    plain = measure(engine, model.lm, TEST_PROMPTS, None, args.max_new_tokens)
    steered = measure(engine, model.lm, TEST_PROMPTS, iv, args.max_new_tokens)
    gain = steered["code_fraction"] - plain["code_fraction"]
    ratio = steered["perplexity"] / plain["perplexity"]
    print(f"[{time.time() - t0:.0f}s] chosen on dev: feature {best['feature']} strength {best['strength']:g}")
    print(
        f"test ({len(TEST_PROMPTS)} prompts, greedy, {args.max_new_tokens} new tokens): code fraction "
        f"{plain['code_fraction']:.2f} -> {steered['code_fraction']:.2f} ({100 * gain:+.0f} points); "
        f"perplexity {plain['perplexity']:.2f} -> {steered['perplexity']:.2f} ({ratio:.2f}x)"
    )
    for prompt, a, b in list(zip(TEST_PROMPTS, plain["texts"], steered["texts"]))[:4]:
        print(f"--- {prompt}\nplain  : {a[:160]!r}\nsteered: {b[:160]!r}")
    out = {
        "sae": args.sae,
        "layer": layer,
        "positions": args.positions,
        "features": [{"id": int(f), "label": f.label, "auroc": f.auroc} for f in features],
        "dev_unsteered": {k: v for k, v in base_dev.items() if k != "texts"},
        "dev_grid": grid,
        "chosen": best,
        "test": {
            "prompts": TEST_PROMPTS,
            "unsteered": plain,
            "steered": steered,
            "gain_points": round(100 * gain, 1),
            "perplexity_ratio": round(ratio, 3),
        },
        "seconds": round(time.time() - t0, 1),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
