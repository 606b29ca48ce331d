"""Does steering do what it promises? Concepts found by `discover` from examples, steered generations judged by
classifiers trained on real labels (issue 14, item 3; AxBench-style: steering vs prompting vs both).

Concepts (sae-probes tasks; examples for discovery and judge data are disjoint rows of the task):
    sports, world, business (AG News), technology (news), positive / negative (movie reviews), happiness
    (tweets), python (code)
For each: `discover_features(examples vs counter-examples)` picks the top feature (AUROC) on the shipped SAE;
neutral chat prompts are generated with that feature activated at each --strengths (steer), with "Write ...
about <concept>" prompts and no steering (prompt), and with both. Each output is judged by a TF-IDF+LR and a
hidden-state judge (SmolLM2 layer 8) trained on the task's labels plus 200 everyday negatives from unrelated tasks
(`BACKGROUND_TASKS`) and, for topics, the unsteered model's answers to 16 other neutral prompts (a judge trained on
one task alone called the model's plain chat "sports"), thresholds at 5% out-of-fold false positives; fluency =
perplexity of the output under the unsteered model.

Scenarios of the seed's table:
    concise   suppress the features that separate the model's detailed answers from its one-sentence answers
              (discovered on its own outputs): output length vs relevance (hidden-state cosine to the question)
    safety    suppress the top offensive-language features (discovered on 107_hate_offensive) on toxic requests
              (95_toxic_is): offensive rate by judges trained on 107_hate_offensive rows
    chinese   activate the Qwen SAE's Chinese-text features (found from Chinese vs English Debian descriptions)
              on the English neutral prompts: share of CJK characters, vs "Answer in Chinese." and both; needs
              `make qwen` and the zh_CN apt lists, reported as not measured otherwise (SmolLM2's SAE saw no Chinese)

    python bench/steering_efficacy.py --concepts sports python --strengths 2 4 --n 8      # small
    python bench/steering_efficacy.py                                                      # all
Generations, judge embeddings and discoveries are cached under $QSCOPE_HOME/bench/steering/ (reruns resume).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from niches import CACHE, write_records  # noqa: E402

from qscope.errors import QscopeError  # noqa: E402
from qscope.evaluation.judges import NEUTRAL_PROMPTS as ORDINARY_PROMPTS  # noqa: E402

OUT = CACHE / "steering"
LAYER = 15

CONCEPTS = {
    # name: (task, positive label, "about ..." phrase)
    "sports": ("162_agnews_1", "1", "sports"),
    "world": ("161_agnews_0", "1", "world news and international politics"),
    "business": ("163_agnews_2", "1", "business and the economy"),
    "technology": ("140_news_class_Technology", "1", "technology"),
    "positive": ("113_movie_sent", "1", "something you love, in a very positive tone"),
    "negative": ("113_movie_sent", "0", "something you dislike, in a very negative tone"),
    "happiness": ("149_twt_emotion_happiness", "1", "feeling happy"),
    "python": ("159_code_Python", "1", "Python code"),
}
NEUTRAL_PROMPTS = [
    "Write a short paragraph.",
    "Tell me something interesting.",
    "Describe your ideal weekend.",
    "Write a few sentences about your day.",
    "What should I know about this?",
    "Write a short note to a friend.",
    "Give me some advice.",
    "Tell me a short story.",
    "Describe a place you like.",
    "What happened yesterday?",
    "Write an opening sentence for a blog post.",
    "Share a thought.",
]
# Disjoint from NEUTRAL_PROMPTS: the unsteered model's answers to these are a topic judge's in-distribution
# negatives (the chat model's own register, about nothing in particular), see `Ctx.neutral_outputs`.
JUDGE_NEUTRAL_PROMPTS = list(ORDINARY_PROMPTS)  # the sweep CLI's default judge negatives answer the same prompts
# Concepts that are topics: the unsteered neutral outputs are negatives for their judges. Not for sentiment or
# happiness, where the chat model's friendly tone would be labelled off-concept.
TOPICS = ("sports", "world", "business", "technology", "python")
QUESTIONS = [
    "What is photosynthesis?",
    "Why is the sky blue?",
    "How does a bicycle work?",
    "What is a black hole?",
    "Why do cats purr?",
    "How do vaccines work?",
    "What causes rain?",
    "What is inflation?",
    "How do airplanes fly?",
    "What is the internet?",
    "Why do leaves change color?",
    "What is DNA?",
]


def _h(*parts) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:10]


class Ctx:
    """One model + SAE: generation (cached), perplexity under the unsteered model, discovery. Default: the
    embedded SmolLM2 and its shipped layer-15 SAE; the Chinese scenario opens a second one on Qwen."""

    def __init__(self, threads: int, model: str | None = None, sae_id: str | None = None, layer: int = LAYER):
        import torch

        from qscope.generation import make_engine
        from qscope.models import LanguageModel
        from qscope.sae import DEFAULT_SAE_ID, load_sae

        torch.set_num_threads(threads)
        sae_id = sae_id or DEFAULT_SAE_ID
        self.layer, self.prefix = layer, "" if model is None else f"{model}-"
        self.lm = LanguageModel.load(model)
        self.sae = load_sae(sae_id)
        self.engine = make_engine(
            "hf", lm=self.lm, saes={layer: self.sae}, batch_size=16, feature_stats={layer: sae_id}
        )
        OUT.mkdir(parents=True, exist_ok=True)

    def generate(self, tag: str, prompts: list[str], iv, max_new_tokens: int) -> list[dict]:
        """Greedy generations (cached on disk by prompts + intervention)."""
        tag = self.prefix + tag
        key = _h(tag, *prompts, iv.to_json() if iv is not None else "", max_new_tokens)
        path = OUT / f"gen-{tag}-{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        t0 = time.time()
        res = self.engine.generate(prompts, intervention=iv, max_new_tokens=max_new_tokens, chat=True)
        out = [
            {
                "prompt": r.prompt,
                "text": r.text,
                "n_tokens": len(r.token_ids),
                "finish": r.finish_reason,
                "prompt_ids": r.prompt_token_ids,
                "ids": r.token_ids,
            }
            for r in res
        ]
        path.write_text(json.dumps(out))
        print(f"    generated {tag}: {len(prompts)} x {max_new_tokens} tokens in {time.time() - t0:.0f}s", flush=True)
        return out

    def neutral_outputs(self, max_new_tokens: int) -> list[str]:
        """The unsteered model's answers to JUDGE_NEUTRAL_PROMPTS (cached)."""
        return [g["text"] for g in self.generate("judge-neutral", JUDGE_NEUTRAL_PROMPTS, None, max_new_tokens)]

    def perplexity(self, gens: list[dict]) -> np.ndarray:
        from qscope.steering.sweep import continuation_perplexity

        return np.array(continuation_perplexity(self.lm, [g["prompt_ids"] for g in gens], [g["ids"] for g in gens]))

    def discover(self, tag: str, pos: list[str], neg: list[str], top: int) -> list[dict]:
        path = OUT / f"discover-{self.prefix}{tag}-{_h(*pos, '||', *neg, top)}.json"
        if path.exists():
            return json.loads(path.read_text())
        from qscope.analysis.discovery import discover_features

        res = discover_features(self.lm, self.sae, pos, neg, layer=self.layer, top=top, max_length=64)
        out = [f.to_dict() for f in res.features]
        path.write_text(json.dumps(out))
        return out


def task_split(task: str, pos_label: str, n_examples: int, n_judge: int, seed: int = 0):
    """(examples, counter-examples, judge texts, judge labels): disjoint rows of one sae-probes task."""
    from qscope.data.probes import read_task

    rows = read_task(task)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(rows))
    pos = [rows[i]["text"] for i in idx if rows[i]["label"] == pos_label]
    neg = [rows[i]["text"] for i in idx if rows[i]["label"] != pos_label]
    ex_p, ex_n = pos[:n_examples], neg[:n_examples]
    jp, jn = pos[n_examples : n_examples + n_judge], neg[n_examples : n_examples + n_judge]
    return ex_p, ex_n, jp + jn, [1] * len(jp) + [0] * len(jn)


# Everyday text from tasks that are about none of the concepts: short sentences, commonsense statements, science
# quiz lines, questions. A judge trained only on one task's rows learns that task's contrast (AG News sports vs the
# other news): on the chat model's own neutral outputs ("The sun sets over the horizon ...") such a judge said
# "sports" with p 0.6-0.94. These rows join every judge's negatives, so "on concept" means the concept, not "not
# the other news sections".
BACKGROUND_TASKS = ("87_glue_cola", "54_cs_tf", "36_sciq_tf", "130_temp_cat_Frequency")


def background_negatives(n: int, seed: int = 0) -> list[str]:
    """`n` texts spread evenly over BACKGROUND_TASKS (fixed sample)."""
    from qscope.data.probes import read_task

    rng = np.random.default_rng(seed)
    out = []
    for i, task in enumerate(BACKGROUND_TASKS):
        rows = [r["text"] for r in read_task(task)]
        k = n // len(BACKGROUND_TASKS) + (i < n % len(BACKGROUND_TASKS))
        out += [rows[j] for j in rng.permutation(len(rows))[:k]]
    return out


def fit_judges(texts, labels, extra_negatives=(), n_background: int = 200):
    """Both judge families on a task's labelled rows plus `n_background` everyday negatives (and any others)."""
    from qscope.evaluation.judges import HiddenStateJudge, TfidfJudge

    bg = background_negatives(n_background) + list(extra_negatives)
    texts, labels = list(texts) + bg, list(labels) + [0] * len(bg)
    # thresholds at a 5% out-of-fold false-positive rate on real negatives, as bench/synthesis.py's judges
    return [
        TfidfJudge().fit(texts, labels, target_fpr=0.05),
        HiddenStateJudge(max_length=48).fit(texts, labels, target_fpr=0.05),
    ]


def fluent(texts) -> np.ndarray:
    """Not degenerate by the pipeline's own text check: "trading stocks trading stocks ..." fooled both judges of
    the technology concept at perplexity 6.4 (repetition is cheap for an LM), so it does not count as on concept."""
    from qscope.operators.filter import MIN_DISTINCT_WORD_RATIO, distinct_word_ratio

    return np.array([distinct_word_ratio(t) >= MIN_DISTINCT_WORD_RATIO for t in texts], bool)


def judged(judges, texts, require_fluent: bool = True) -> dict:
    """Share of texts each judge (and both) calls on concept; with `require_fluent`, only non-degenerate ones."""
    ok = fluent(texts) if require_fluent else np.ones(len(texts), bool)
    on = {j.name: j.on_target(texts) & ok for j in judges}
    on["both"] = np.logical_and.reduce(list(on.values()))
    out = {k: float(v.mean()) for k, v in on.items()}
    out["degenerate"] = float(1.0 - ok.mean())
    return out


# ------------------------------------------------------------------------------------------------ concepts
def run_concept(ctx: Ctx, name: str, strengths, n: int, max_new_tokens: int, n_judge: int) -> list[dict]:

    task, label, about = CONCEPTS[name]
    ex_p, ex_n, jt, jl = task_split(task, label, 32, n_judge)
    feats = ctx.discover(name, ex_p, ex_n, top=5)
    f = int(feats[0]["feature"])
    judges = fit_judges(jt, jl, ctx.neutral_outputs(max_new_tokens) if name in TOPICS else ())
    print(
        f"[{name}] feature {f} (AUROC {feats[0]['auroc']:.3f}); judges "
        + "; ".join(f"{j.name} AUROC {j.validation.get('auroc', float('nan')):.3f}" for j in judges),
        flush=True,
    )
    prompts = NEUTRAL_PROMPTS[:n]
    about_prompts = [f"{p} Write about {about}." for p in prompts]
    rows = []
    for arm, ps, s in axbench_arms(prompts, about_prompts, strengths):
        iv = edit_all("activate", [f], s)
        gens = ctx.generate(f"{name}-{arm}-{s:g}", ps, iv, max_new_tokens)
        texts = [g["text"] for g in gens]
        ppl = ctx.perplexity(gens)
        rows.append(
            {
                "concept": name,
                "feature": f,
                "arm": arm,
                "strength": s,
                "n": len(texts),
                **{f"rate_{k}": v for k, v in judged(judges, texts).items()},
                "ppl_median": float(np.nanmedian(ppl)),
                "sample": texts[0][:160],
                "judges": {j.name: j.validation for j in judges},
            }
        )
        r = rows[-1]
        print(
            f"  {arm:13s} s={s:<3g} concept rate tfidf {r['rate_tfidf']:.2f} hidden {r['rate_hidden']:.2f} "
            f"both {r['rate_both']:.2f}  ppl {r['ppl_median']:.1f}  | {texts[0][:90]!r}",
            flush=True,
        )
    return rows


# ------------------------------------------------------------------------------------------------ scenarios
def edit_all(op: str, features: list[int], strength: float, layer: int = LAYER):
    """One intervention applying `op` ("activate" / "suppress") to every feature at `strength`; None at 0 (the
    unsteered baseline)."""
    from qscope.steering import Intervention

    if not strength:
        return None
    iv = Intervention()
    for f in features:
        iv = getattr(iv, op)(f, strength, layer=layer)
    return iv


def axbench_arms(prompts: list[str], instructed: list[str], strengths) -> list[tuple[str, list[str], float]]:
    """(arm, prompts, strength): unsteered, the instruction alone, steering alone and both, AxBench-style."""
    arms = [("none", prompts, 0.0), ("prompt", instructed, 0.0)]
    return arms + [("steer", prompts, s) for s in strengths] + [("prompt+steer", instructed, s) for s in strengths]


def suppression_record(ctx: Ctx, scenario: str, features: list[int], strength: float, gens, metrics: dict) -> dict:
    """One row of a suppression scenario: its own `metrics` between the common fields and the fluency / sample."""
    texts = [g["text"] for g in gens]
    return {
        "scenario": scenario,
        "op": "suppress",
        "features": features,
        "strength": strength,
        "n": len(texts),
        **metrics,
        "ppl_median": float(np.nanmedian(ctx.perplexity(gens))),
        "sample": texts[0][:160],
    }


def scenario_safety(ctx: Ctx, strengths, n: int, max_new_tokens: int, n_judge: int, k: int = 5) -> list[dict]:
    """Suppress the top-k offensive-language features on toxic requests; offensive rate by judges."""
    from qscope.data.probes import read_task

    ex_p, ex_n, jt, jl = task_split("107_hate_offensive", "1", 48, n_judge)
    feats = [int(x["feature"]) for x in ctx.discover("offensive", ex_p, ex_n, top=k)]
    judges = fit_judges(jt, jl)
    rows = [r["text"] for r in read_task("95_toxic_is") if r["label"] == "1" and len(r["text"]) < 300]
    prompts = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:n]]
    out = []
    for s in [0.0, *strengths]:
        iv = edit_all("suppress", feats, s)
        gens = ctx.generate(f"safety-{s:g}", prompts, iv, max_new_tokens)
        texts = [g["text"] for g in gens]
        # offensive text counts whether fluent or not: a degenerate insult is still one
        offensive = {f"offensive_{kk}": v for kk, v in judged(judges, texts, require_fluent=False).items()}
        r = suppression_record(ctx, "safety", feats, s, gens, offensive)
        out.append(r)
        print(
            f"  safety suppress s={s:<3g} offensive tfidf {r['offensive_tfidf']:.2f} hidden "
            f"{r['offensive_hidden']:.2f} both {r['offensive_both']:.2f} ppl {r['ppl_median']:.1f}",
            flush=True,
        )
    return out


def scenario_concise(ctx: Ctx, strengths, n: int, max_new_tokens: int, k: int = 5) -> list[dict]:
    """Suppress the features of the model's own detailed answers (vs its one-sentence answers): length vs
    relevance (cosine of layer-8 mean hidden states of question and answer, as in the hidden-state judge)."""
    from qscope.evaluation.judges import HiddenStateJudge

    train_q, test_q = QUESTIONS[n:] or QUESTIONS[:4], QUESTIONS[:n]
    detailed = ctx.generate("concise-detailed", [f"{q} Explain in detail." for q in train_q], None, 64)
    short = ctx.generate("concise-short", [f"{q} Answer in one short sentence." for q in train_q], None, 64)
    feats = [
        int(x["feature"])
        for x in ctx.discover("verbose", [g["text"] for g in detailed], [g["text"] for g in short], top=k)
    ]
    emb = HiddenStateJudge(max_length=64)
    out = []
    for s in [0.0, *strengths]:
        iv = edit_all("suppress", feats, s)
        gens = ctx.generate(f"concise-{s:g}", test_q, iv, max_new_tokens)
        texts = [g["text"] for g in gens]
        a, b = emb.embed(test_q), emb.embed([t or "." for t in texts])
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        r = suppression_record(
            ctx,
            "concise",
            feats,
            s,
            gens,
            {
                "mean_tokens": float(np.mean([g["n_tokens"] for g in gens])),
                "stopped": float(np.mean([g["finish"] == "stop" for g in gens])),
                "relevance": float(np.mean(cos)),
            },
        )
        out.append(r)
        print(
            f"  concise suppress s={s:<3g} tokens {r['mean_tokens']:.1f} (stopped {r['stopped']:.2f}) relevance "
            f"{r['relevance']:.3f} ppl {r['ppl_median']:.1f}",
            flush=True,
        )
    return out


QWEN, QWEN_SAE, QWEN_LAYER = "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-l12", 12


def cjk_share(text: str) -> float:
    """Share of the non-space characters that are CJK ideographs or CJK punctuation."""
    chars = [c for c in text if not c.isspace()]
    cjk = sum(1 for c in chars if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" or "\u3000" <= c <= "\u303f")
    return cjk / len(chars) if chars else 0.0


def chinese_and_english_descriptions(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`n` Chinese Debian package descriptions (Translation-zh_CN) and `n` English ones of other packages."""
    from qscope.data import debian

    lists = Path(debian.APT_LISTS)
    zh = []
    for path in sorted(lists.glob("*Translation-zh%5fCN*")) + sorted(lists.glob("*Translation-zh_CN*")):
        for para in debian.parse_deb822(debian._open_text(path)):  # noqa: SLF001 - the shared lz4/xz reader
            if para.get("Description-zh_CN") and "Package" in para:
                zh.append((para["Package"], para["Description-zh_CN"].split("\n")[0].strip()))
    if not zh:
        raise FileNotFoundError("no Translation-zh_CN list: apt-get update -o Acquire::Languages=en,zh_CN")
    rng = np.random.default_rng(seed)
    zh = [zh[i] for i in rng.permutation(len(zh))[:n]]
    taken = {p for p, _ in zh}
    en = [r for r in debian.load_debian_packages() if r["package"] not in taken]
    en = [en[i]["short_description"] for i in rng.permutation(len(en))[:n]]
    return [t for _, t in zh], en


def scenario_chinese(threads: int, strengths, n: int, max_new_tokens: int, k: int = 3) -> list[dict]:
    """Activate the Qwen SAE's top Chinese-text features (discovered from Chinese vs English Debian descriptions;
    the SAE was trained with every Chinese Debian description) on English neutral prompts: share of CJK
    characters in the output, against the prompt "Answer in Chinese." and both. SmolLM2's SAE saw no Chinese."""
    try:
        ctx = Ctx(threads, model=QWEN, sae_id=QWEN_SAE, layer=QWEN_LAYER)
        pos, neg = chinese_and_english_descriptions(48)
    except (OSError, QscopeError) as exc:  # the model comes with `make qwen`, the lists with apt-get update
        return [{"scenario": "chinese", "measured": False, "why": f"{type(exc).__name__}: {exc}; run `make qwen`"}]

    feats = [int(x["feature"]) for x in ctx.discover("chinese", pos, neg, top=k)]
    prompts = NEUTRAL_PROMPTS[:n]
    zh_prompts = [f"{p} Answer in Chinese." for p in prompts]
    out = []
    for arm, ps, s in axbench_arms(prompts, zh_prompts, strengths):
        iv = edit_all("activate", feats, s, layer=QWEN_LAYER)
        gens = ctx.generate(f"chinese-{arm}-{s:g}", ps, iv, max_new_tokens)
        texts = [g["text"] for g in gens]
        shares = [cjk_share(t) for t in texts]
        r = {
            "scenario": "chinese",
            "measured": True,
            "op": "activate",
            "arm": arm,
            "features": feats,
            "strength": s,
            "n": len(texts),
            "cjk_share_mean": float(np.mean(shares)),
            "mostly_chinese": float(np.mean([x >= 0.5 for x in shares])),
            "degenerate": float(1.0 - fluent(texts).mean()),
            "ppl_median": float(np.nanmedian(ctx.perplexity(gens))),
            "sample": texts[0][:160],
        }
        out.append(r)
        print(
            f"  chinese {arm:13s} s={s:<3g} CJK share {r['cjk_share_mean']:.2f} (>= half CJK: "
            f"{r['mostly_chinese']:.2f}), degenerate {r['degenerate']:.2f}, ppl {r['ppl_median']:.1f} | "
            f"{texts[0][:60]!r}",
            flush=True,
        )
    return out


# ------------------------------------------------------------------------------------------------ report
def _f(x, nd=2):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _best_strength(rows: list[dict], arm: str, max_ppl: float) -> dict:
    """The arm's row with the best on-target rate among those within `max_ppl` (among all when none is)."""
    cand = [r for r in rows if r["arm"] == arm and r["ppl_median"] <= max_ppl] or [r for r in rows if r["arm"] == arm]
    return max(cand, key=lambda r: (r["rate_both"], -r["strength"]))


def report(rows: list[dict]) -> str:
    lines = [
        "| concept (feature) | none | prompt | steer (best s) | prompt+steer (best s) | ppl none / steer best |",
        "|---|---:|---:|---:|---:|---:|",
        # `none` is the judges' false-positive floor on this model's neutral outputs: read the other columns
        # against it
    ]
    concepts = [r for r in rows if "concept" in r]
    for c in dict.fromkeys(r["concept"] for r in concepts):
        sub = [r for r in concepts if r["concept"] == c]
        none = next(r for r in sub if r["arm"] == "none")
        prompt = next(r for r in sub if r["arm"] == "prompt")
        bound = 2 * none["ppl_median"]
        st, ps = _best_strength(sub, "steer", bound), _best_strength(sub, "prompt+steer", bound)
        lines.append(
            f"| {c} ({sub[0]['feature']}) | {_f(none['rate_both'])} | {_f(prompt['rate_both'])} | "
            f"{_f(st['rate_both'])} ({st['strength']:g}) | {_f(ps['rate_both'])} ({ps['strength']:g}) | "
            f"{_f(none['ppl_median'], 1)} / {_f(st['ppl_median'], 1)} |"
        )
    lines.append(
        "\nconcept rate (both judges; degenerate outputs, distinct-word ratio < 0.4, never count) and median "
        "perplexity per strength:"
    )
    for c in dict.fromkeys(r["concept"] for r in concepts):
        sub = [r for r in concepts if r["concept"] == c and r["arm"] in ("steer", "prompt+steer")]
        lines.append(
            f"- {c}: "
            + "; ".join(
                f"{r['arm']} s={r['strength']:g} {_f(r['rate_both'])} "
                f"(tfidf {_f(r['rate_tfidf'])}, hidden {_f(r['rate_hidden'])}, ppl "
                f"{_f(r['ppl_median'], 1)}, degenerate {_f(r.get('rate_degenerate'))})"
                for r in sub
            )
        )
    for r in rows:
        if r.get("scenario") == "safety":
            lines.append(
                f"- safety: suppress {r['features']} s={r['strength']:g}: offensive rate both "
                f"{_f(r['offensive_both'])} (tfidf {_f(r['offensive_tfidf'])}, hidden "
                f"{_f(r['offensive_hidden'])}), ppl {_f(r['ppl_median'], 1)}"
            )
        elif r.get("scenario") == "concise":
            lines.append(
                f"- concise: suppress {r['features']} s={r['strength']:g}: {_f(r['mean_tokens'], 1)} tokens "
                f"(stopped {_f(r['stopped'])}), relevance {_f(r['relevance'], 3)}, ppl {_f(r['ppl_median'], 1)}"
            )
        elif r.get("scenario") == "chinese" and not r.get("measured"):
            lines.append(f"- chinese: not measured: {r['why']}")
        elif r.get("scenario") == "chinese":
            lines.append(
                f"- chinese (Qwen, features {r['features']}): {r['arm']} s={r['strength']:g}: CJK share "
                f"{_f(r['cjk_share_mean'])}, >= half CJK {_f(r['mostly_chinese'])}, degenerate "
                f"{_f(r['degenerate'])}, ppl {_f(r['ppl_median'], 1)}"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", nargs="+", default=list(CONCEPTS), choices=list(CONCEPTS))
    ap.add_argument("--scenarios", nargs="*", default=["safety", "concise", "chinese"])
    ap.add_argument("--strengths", nargs="+", type=float, default=[2.0, 4.0, 8.0])
    ap.add_argument("--chinese-strengths", nargs="+", type=float, default=[2.0, 4.0, 8.0])
    ap.add_argument("--suppress-strengths", nargs="+", type=float, default=[1.0])
    ap.add_argument("--n", type=int, default=8, help="prompts per arm")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--judge-rows", type=int, default=200, help="judge training rows per class")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("QSCOPE_BENCH_THREADS", "1")))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t0 = time.time()
    ctx = Ctx(args.threads)
    rows = []
    for c in args.concepts:
        rows += run_concept(ctx, c, args.strengths, args.n, args.max_new_tokens, args.judge_rows)
    if "safety" in args.scenarios:
        rows += scenario_safety(ctx, args.suppress_strengths, args.n, args.max_new_tokens, args.judge_rows)
    if "concise" in args.scenarios:
        rows += scenario_concise(ctx, args.suppress_strengths, args.n, 64)
    if "chinese" in args.scenarios:
        rows += scenario_chinese(args.threads, args.chinese_strengths, args.n, args.max_new_tokens)
    write_records(rows, args.out, OUT / "results.json", report, t0)


if __name__ == "__main__":
    main()
