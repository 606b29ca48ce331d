"""Are synthesized samples on target? Judged by classifiers that are not the SAE (issue 14, items 1-2).

For each niche (bench/niches.py: Debian hamradio / electronics / biology, AG News sports), 20 seeds and a corpus
go through the expand pipeline's own pieces, in process: `EncodeSignatures` (seeds, corpus), `SeedModel.fit`
(targets, seed classifier), `pipelines.expand.build_prompts`, `SteeredGenerate` (HF), `ScoreTargetFeatures`
(re-encode), then each filter. Arms:

    fewshot          few-shot prompt (synthesis.n_shots seeds as examples), strength 0
    steer            no examples in the prompt, target features activated at each --strengths
    steer+fewshot    both
    topic            few-shot prompt that also names the niche (a prompt lever), strength 0
    topic+steer      that prompt, target features activated at each --strengths

Judges (qscope.evaluation.judges), trained on real labels disjoint from seeds and corpus: TF-IDF+LR and a
hidden-state probe on SmolLM2 layer 8 (the SAE reads layer 15). Per arm, before and after each filter: on-target
rate by each judge and by both, kept count, distinct-2, novelty (longest word n-gram shared with the nearest seed /
corpus row, 3-gram containment), fluency (perplexity of the text under the unsteered LM), and each filter score's
precision-yield curve (on-target rate of the top k as k grows).

Filters: "target" = the demo's filter (target_score >= 0.15, >= 20 chars, distinct-word ratio >= 0.4);
"seed" = the seed classifier's probability on the re-encoded text (its signature and, with mining.read_text as
in the pipeline, its words; --no-read-text: the signature only) >= the mining cut-off for precision 0.8
(SeedModel.mining_cutoff, from the seeds' held-out scores), with the same text checks; "seed-nosteer" = the
same with the features the sample was steered with removed from its signature before scoring; "target+seed" =
"target" and "seed-nosteer" together (the pipeline with `min_target_score: 0.15`, `min_seed_score: auto`). Every
filter ends with the pipeline's dedup (word-3-gram overlap >= 0.8 with a seed or a better row).

Judge thresholds (--judge-fpr, default 0.05): each judge calls a text on target above the score that 5% of its
real negatives reach out of fold (`Judge.fit(target_fpr=...)`), one rule for both judge families and every niche;
0.5 of a balanced logistic regression left hamradio's TF-IDF judge at recall 0.62 on real hamradio text.

    python bench/synthesis.py --niches hamradio --n 16                      # small
    python bench/synthesis.py                                               # all niches, n 24, strengths 1 2
    python bench/synthesis.py --report-only                                 # tables from what is cached

Everything is cached under $QSCOPE_HOME/bench/synthesis/ (signatures, generations, scores, judge embeddings):
a rerun resumes, and a larger --n generates only the missing samples.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from niches import CACHE, NICHES, REPO, load_niche, write_records  # noqa: E402

OUT = CACHE / "synthesis"
ARMS = ("fewshot", "steer", "steer+fewshot", "topic", "topic+steer")
FILTERS = ("none", "target", "seed", "seed-nosteer", "target+seed")
SHARD = (0, 1)
STORES: list[str] = []  # --corpus-signatures
SYN_OVERRIDES: dict = {}  # --syn KEY=VALUE: synthesis settings other than the demo's (n_shots, temperature, ...)
OLD_MIN_TARGET_SCORE = 0.15  # the demo's filter before issue 14: target_score >= 0.15


def _h(*parts) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:10]


def demo_config():
    from qscope.pipelines.config import ExpandConfig

    return ExpandConfig.from_yaml(REPO / "configs/demo.yaml")


# ------------------------------------------------------------------------------------------------ encoding
class Encoder:
    """Signatures exactly as the demo pipeline encodes them (max pooling, top 256, 48 tokens), cached by text."""

    def __init__(self, cfg):
        from qscope.operators import EncodeSignatures

        self.cfg = cfg
        hidden = bool(cfg.signatures.hidden_mean)
        self.op = EncodeSignatures(
            cfg.model.to_dict(), pooling=cfg.signatures.pooling, top_n=cfg.signatures.top_n, hidden_mean=hidden
        )
        # the key of the caches made before `hidden_mean` existed stays as it was
        self.key = _h(
            cfg.model.to_dict(), cfg.signatures.pooling, cfg.signatures.top_n, *(["hidden"] if hidden else [])
        )

    def table(self, name: str, rows: list[dict], chunk: int = 100) -> pa.Table:
        """Signatures of `rows` ({id, text}); encoded in chunks that are kept on disk, so a killed run resumes."""
        import pyarrow.parquet as pq

        path = OUT / "signatures" / f"{name}-{self.key}-{_h(*[r['text'] for r in rows])}.parquet"
        if path.exists():
            return pq.read_table(path)
        if STORES:
            found = self.from_stores(rows)
            if found is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(found, path.with_suffix(".tmp"))
                os.replace(path.with_suffix(".tmp"), path)
                print(f"  {name}: {len(rows)} signatures taken from a pipeline's corpus store", flush=True)
                return found
        parts_dir = path.with_suffix(".parts")
        parts_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        parts = []
        shard, n_shards = SHARD
        for c0 in range(0, len(rows), chunk):
            part = parts_dir / f"{c0:06d}.parquet"
            if (c0 // chunk) % n_shards != shard:  # another process encodes this chunk (--shard)
                continue
            if not part.exists():
                sub = rows[c0 : c0 + chunk]
                out = self.op(pa.table({"id": [r["id"] for r in sub], "text": [r["text"] for r in sub]}))
                pq.write_table(out, part.with_suffix(".tmp"))
                os.replace(part.with_suffix(".tmp"), part)
                print(
                    f"  encoded {min(c0 + chunk, len(rows))}/{len(rows)} {name} texts ({time.time() - t0:.0f}s)",
                    flush=True,
                )
            parts.append(pq.read_table(part))
        if n_shards > 1:
            missing = [c0 for c0 in range(0, len(rows), chunk) if not (parts_dir / f"{c0:06d}.parquet").exists()]
            if missing:
                raise SystemExit(f"shard {shard}/{n_shards} done; chunks {missing[:5]}... are another shard's")
            parts = [pq.read_table(parts_dir / f"{c0:06d}.parquet") for c0 in range(0, len(rows), chunk)]
        out = pa.concat_tables(parts)
        pq.write_table(out, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
        for p in parts_dir.glob("*"):
            p.unlink()
        parts_dir.rmdir()
        return out

    def meta(self):
        return self.op.signature_meta()

    def from_stores(self, rows: list[dict]) -> pa.Table | None:
        """`rows`' signatures from a pipeline's corpus store (`--corpus-signatures`, e.g. out/demo/corpus_signatures
        of a `make demo` run) built with the same encoder settings; None unless every row (id and text) is there."""
        import pyarrow.dataset as pads

        want = {
            **{k: getattr(self.meta(), k) for k in ("model", "sae", "layer", "pooling", "top_n", "d_sae")},
            "max_length": self.cfg.model.max_length,
        }
        for store in STORES:
            manifest = json.loads((Path(store) / "_manifest.json").read_text())
            if any(manifest["meta"].get(k) != v for k, v in want.items()):
                print(f"  {store}: built with other encoder settings ({manifest['meta']}); not used", flush=True)
                continue
            t = pads.dataset(store, partitioning="hive", exclude_invalid_files=True).to_table(
                columns=["id", "text", "feature_ids", "feature_values", "n_tokens", "truncated"]
            )
            pos = {(i, x): k for k, (i, x) in enumerate(zip(t["id"].to_pylist(), t["text"].to_pylist()))}
            idx = [pos.get((r["id"], r["text"])) for r in rows]
            if all(i is not None for i in idx):
                return t.take(pa.array(idx, pa.int64()))
        return None


# ------------------------------------------------------------------------------------------------ niche state
class NicheRun:
    def __init__(self, name: str, cfg, encoder: Encoder, target_precision: float = 0.8):
        from qscope.seed_model import SeedModel

        self.name, self.niche, self.cfg = name, load_niche(name), cfg
        n = self.niche
        self.seed_table = encoder.table(f"{name}-seeds", n.seeds)
        self.corpus_key = "debian-demo" if name in ("hamradio", "electronics", "biology") else name
        self.corpus_table = encoder.table(f"{self.corpus_key}-corpus", n.corpus)
        self.meta = encoder.meta()
        t = cfg.targets

        def views(tb: pa.Table) -> pa.Table:  # mining.read_text: false = the seed classifier reads no text view
            return tb if cfg.mining.read_text or "text" not in tb.column_names else tb.drop_columns(["text"])

        self.model = SeedModel.fit(
            views(self.seed_table),
            views(self.corpus_table),
            self.meta,
            n_targets=t.n_features,
            target_method=t.method,
            min_seed_fraction=t.min_seed_fraction,
            method=cfg.mining.method,
            k=cfg.mining.k,
        )
        self.cutoff = self.model.mining_cutoff(target_precision)
        self.classifier = self.model.classifier()
        syn = cfg.synthesis
        self.syn = replace(
            syn,
            what=n.what,
            example_template=n.example_template,
            prompt_template=n.prompt_template,
            stop_strings=list(n.stop_strings),
            **SYN_OVERRIDES,
        )
        self.dir = OUT / name
        self.dir.mkdir(parents=True, exist_ok=True)

    def prompts(self, arm: str, strength: float, n: int) -> pa.Table:
        from qscope.pipelines.expand import build_prompts

        syn = self.syn
        if arm.startswith("topic"):
            syn = replace(syn, what=f"{self.niche.what} of {self.niche.topic}")
        shots = 0 if arm == "steer" else syn.n_shots
        return build_prompts(
            [s["id"] for s in self.niche.seeds],
            [s["text"] for s in self.niche.seeds],
            self.model,
            syn,
            n_samples=n,
            strengths=[strength],
            n_shots=shots,
        )


# ------------------------------------------------------------------------------------------------ generation
_GEN = {}


def generator(cfg, syn):
    from qscope.operators import SteeredGenerate

    key = (syn.max_new_tokens, syn.temperature, syn.seed, tuple(syn.stop_strings))
    if key not in _GEN:
        _GEN[key] = SteeredGenerate(
            cfg.model.to_dict(),
            engine="hf",
            max_new_tokens=syn.max_new_tokens,
            temperature=syn.temperature,
            seed=syn.seed,
            chat=syn.chat,
            stop_strings=list(syn.stop_strings),
        )
    return _GEN[key]


def generate(run: NicheRun, arm: str, strength: float, n: int, batch: int = 8) -> pa.Table:
    """Generations for (arm, strength): the first n prompts of a fixed sequence, cached per batch of `batch`."""
    import pyarrow.parquet as pq

    prompts = run.prompts(arm, strength, n)
    syn = run.syn
    key = _h(
        arm,
        strength,
        syn.max_new_tokens,
        syn.temperature,
        syn.seed,
        syn.n_shots,
        syn.what,
        syn.prompt_template,
        syn.example_template,
        syn.features_per_sample,
        run.model.target_ids,
    )
    parts = []
    for b0 in range(0, n, batch):
        path = run.dir / f"gen-{arm}-s{strength:g}-{key}-{b0:04d}.parquet"
        sub = prompts.slice(b0, min(batch, n - b0))
        if path.exists() and pq.read_metadata(path).num_rows == sub.num_rows:
            parts.append(pq.read_table(path))
            continue
        t0 = time.time()
        op = generator(run.cfg, syn)
        # the HF engine seeds sampling per call: a batch offset keeps batches from repeating each other
        op.seed = syn.seed + b0
        out = op(sub)
        pq.write_table(out, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
        print(
            f"  [{run.name}] {arm} s={strength:g}: generated {b0 + sub.num_rows}/{n} "
            f"({sum(out['n_new_tokens'].to_pylist())} tokens, {time.time() - t0:.0f}s)",
            flush=True,
        )
        parts.append(out)
    return pa.concat_tables(parts, promote_options="permissive")


def pilot_strength(run: NicheRun, arm: str) -> tuple[float, list[dict]]:
    """`synthesis.strengths: auto` as the pipeline runs it (`pipelines.expand._choose_strength`): `pilot_samples`
    generations per strength of `auto_strengths` from other shots (seed + 7919), re-encoded and put through the
    pipeline's filter (target + seed); the pipeline's `pilot_choice` picks."""
    from qscope.pipelines.expand import pilot_choice

    syn = run.syn
    run.syn = replace(syn, seed=syn.seed + 7919)
    try:
        pilot = []
        for s in sorted({float(x) for x in syn.auto_strengths}):
            scored = score(run, generate(run, arm, s, syn.pilot_samples))
            rows = {
                "text": [t or "" for t in scored["text"].to_pylist()],
                "target_score": np.asarray(scored["target_score"].to_pylist(), float),
                "seed_score_nosteer": seed_scores(run, scored, True),
            }
            passed = len(apply_filter("target+seed", run, rows, np.arange(scored.num_rows)))
            pilot.append({"strength": s, "n": scored.num_rows, "passed": passed})
    finally:
        run.syn = syn
    best = pilot_choice(pilot)
    print(f"  [{run.name}] {arm} strength pilot: {pilot} -> {best:g}", flush=True)
    return best, pilot


# ------------------------------------------------------------------------------------------------ scoring
_SCORER = {}


def score(run: NicheRun, gen: pa.Table) -> pa.Table:
    """Re-encode with ScoreTargetFeatures (the pipeline's score step), cached per generation batch content."""
    import pyarrow.parquet as pq

    from qscope.operators import ScoreTargetFeatures

    path = run.dir / f"scored-{_h(*gen['id'].to_pylist(), *gen['text'].to_pylist(), run.model.target_ids)}.parquet"
    if path.exists():
        return pq.read_table(path)
    key = tuple(run.model.target_ids)
    if key not in _SCORER:
        _SCORER[key] = ScoreTargetFeatures(
            seed_model=run.model,
            model_spec=run.cfg.model.to_dict(),
            pooling=run.cfg.signatures.pooling,
            top_n=run.cfg.signatures.top_n,
            keep_tokens=False,
        )
    out = _SCORER[key](gen)
    pq.write_table(out, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return out


def seed_scores(run: NicheRun, scored: pa.Table, drop_steered: bool) -> np.ndarray:
    from qscope.pipelines.expand import without_steered_features
    from qscope.seed_model import seed_scores as classifier_scores

    return classifier_scores(run.classifier, without_steered_features(scored) if drop_steered else scored).scores[:, 0]


_PPL = {}


def perplexity(texts: list[str]) -> np.ndarray:
    """Perplexity of each text alone (after BOS) under the unsteered LM; cached by text."""
    from qscope.steering.sweep import continuation_perplexity

    todo = [t for t in dict.fromkeys(texts) if t not in _PPL and t.strip()]
    if todo:
        from qscope.models import LanguageModel

        lm = LanguageModel.load()
        tok = lm.tokenizer
        bos = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
        ids = [tok(t, add_special_tokens=False)["input_ids"][:96] for t in todo]
        for t, p in zip(todo, continuation_perplexity(lm, [bos] * len(ids), ids)):
            _PPL[t] = p
    return np.array([_PPL.get(t, float("nan")) for t in texts])


# ------------------------------------------------------------------------------------------------ judges
_JUDGES: dict[str, list] = {}
JUDGE_MAX: int | None = None  # --judge-max
JUDGE_FPR: float | None = 0.05  # --judge-fpr: each judge's threshold lets this share of real negatives pass (CV)


def judges(run: NicheRun) -> list:
    from qscope.evaluation.judges import HiddenStateJudge, TfidfJudge

    if run.name not in _JUDGES:
        n = run.niche
        texts, labels = n.judge_texts, n.judge_labels
        if JUDGE_MAX:
            rng = np.random.default_rng(0)
            y = np.asarray(labels)
            keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:JUDGE_MAX] for c in (0, 1)]))
            texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
        t0 = time.time()
        js = [
            TfidfJudge().fit(texts, labels, target_fpr=JUDGE_FPR),
            HiddenStateJudge(max_length=48).fit(texts, labels, target_fpr=JUDGE_FPR),
        ]
        print(
            f"  [{run.name}] judges fitted in {time.time() - t0:.0f}s: "
            + "; ".join(f"{j.name} {j.validation}" for j in js),
            flush=True,
        )
        _JUDGES[run.name] = js
    return _JUDGES[run.name]


# ------------------------------------------------------------------------------------------------ text metrics
def _words(t: str) -> list[str]:
    return t.lower().split()


def distinct_n(texts: list[str], n: int = 2) -> float:
    grams = [tuple(w[i : i + n]) for w in map(_words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def _grams(t: str, n: int = 3) -> set:
    w = _words(t)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def longest_shared_ngram(a: str, b: str) -> int:
    wa, wb = _words(a), _words(b)
    best, prev = 0, [0] * (len(wb) + 1)
    for x in wa:
        cur = [0] * (len(wb) + 1)
        for j, y in enumerate(wb, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


class Novelty:
    """Longest word n-gram shared with the nearest reference text (by 3-gram containment) and that containment."""

    def __init__(self, refs: list[str]):
        self.refs = refs
        self.grams = [_grams(r) for r in refs]

    def __call__(self, text: str) -> tuple[int, float]:
        g = _grams(text)
        if not g:
            return 0, 0.0
        cont = [len(g & r) / len(g) for r in self.grams]
        best = int(np.argmax(cont))
        # the longest shared run can sit in a text that shares few 3-grams: check the 5 most similar
        top = np.argsort(cont)[::-1][:5]
        return max(longest_shared_ngram(text, self.refs[i]) for i in top), float(cont[best])


# ------------------------------------------------------------------------------------------------ filters
def apply_filter(name: str, run: NicheRun, rows: dict, idx: np.ndarray) -> np.ndarray:
    """Indices (into rows) kept by filter `name` among `idx`, best first, after the pipeline's dedup."""
    from qscope.operators import Dedup
    from qscope.operators.filter import distinct_word_ratio

    f = run.cfg.filter
    texts = rows["text"]
    ok = (
        np.array(
            [
                len(texts[i].strip()) >= f.min_chars and distinct_word_ratio(texts[i]) >= f.min_distinct_word_ratio
                for i in idx
            ],
            bool,
        )
        if len(idx)
        else np.zeros(0, bool)
    )
    if name == "none":
        return idx
    if name == "target":
        ok &= rows["target_score"][idx] >= OLD_MIN_TARGET_SCORE
        order_by = rows["target_score"]
    elif name in ("seed", "seed-nosteer"):
        col = "seed_score" if name == "seed" else "seed_score_nosteer"
        ok &= rows[col][idx] >= run.cutoff.cutoff
        order_by = rows[col]
    elif name == "target+seed":  # the pipeline with min_target_score 0.15 and min_seed_score: auto
        ok &= rows["target_score"][idx] >= OLD_MIN_TARGET_SCORE
        ok &= rows["seed_score_nosteer"][idx] >= run.cutoff.cutoff
        order_by = rows["seed_score_nosteer"]
    else:
        raise KeyError(name)
    kept = idx[ok]
    kept = kept[np.argsort(-order_by[kept], kind="stable")]
    if not len(kept):
        return kept
    d = Dedup(run.cfg.dedup.threshold, reference=[s["text"] for s in run.niche.seeds], measure=run.cfg.dedup.measure)
    t = d(pa.table({"i": pa.array(kept, pa.int64()), "text": [texts[i] for i in kept]}))
    return np.asarray(t["i"].to_pylist(), np.int64)


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate_niche(name: str, cfg, encoder: Encoder, arms, strengths, n: int) -> list[dict]:
    run = NicheRun(name, cfg, encoder, cfg.mining.target_precision)
    print(
        f"[{name}] targets {run.model.target_ids}; seed-classifier cut-off for precision 0.8: {run.cutoff.to_dict()}",
        flush=True,
    )
    js = judges(run)
    reference = judge_reference(run, js)
    seeds_nov = Novelty([s["text"] for s in run.niche.seeds])
    corpus_nov = Novelty([r["text"] for r in run.niche.corpus])
    out = []
    for arm in arms:
        pilot = None
        if arm in ("fewshot", "topic"):
            arm_strengths = [0.0]
        elif strengths == ["auto"]:
            best, pilot = pilot_strength(run, arm)
            arm_strengths = [best]
        else:
            arm_strengths = [float(x) for x in strengths]
        for s in arm_strengths:
            gen = generate(run, arm, s, n)
            scored = score(run, gen)
            texts = [t or "" for t in scored["text"].to_pylist()]
            rows = {
                "text": texts,
                "target_score": np.asarray(scored["target_score"].to_pylist(), float),
                "seed_score": seed_scores(run, scored, False),
                "seed_score_nosteer": seed_scores(run, scored, True),
            }
            p = {j.name: j.proba(texts) for j in js}
            on = {j.name: p[j.name] >= j.threshold for j in js}
            on["both"] = np.logical_and.reduce([on[j.name] for j in js])
            ppl = perplexity(texts)
            nov_s = [seeds_nov(t) for t in texts]
            nov_c = [corpus_nov(t) for t in texts]
            idx_all = np.arange(len(texts))
            rec = {
                "niche": name,
                "arm": arm,
                "strength": s,
                "n": len(texts),
                "cutoff": run.cutoff.cutoff,
                "targets": run.model.target_ids,
                "judges": {j.name: j.validation for j in js},
                "reference": reference,
                "syn": dict(SYN_OVERRIDES),
                "strength_pilot": pilot,
            }
            for f in FILTERS:
                kept = apply_filter(f, run, rows, idx_all)
                k = len(kept)
                rec[f] = {
                    "kept": k,
                    **{f"on_{j}": (float(on[j][kept].mean()) if k else float("nan")) for j in on},
                    "distinct2": distinct_n([texts[i] for i in kept]),
                    "ppl_median": float(np.nanmedian(ppl[kept])) if k else float("nan"),
                    "seed_lcs_median": float(np.median([nov_s[i][0] for i in kept])) if k else float("nan"),
                    "seed_overlap_median": float(np.median([nov_s[i][1] for i in kept])) if k else float("nan"),
                    "corpus_lcs_median": float(np.median([nov_c[i][0] for i in kept])) if k else float("nan"),
                    "corpus_overlap_median": float(np.median([nov_c[i][1] for i in kept])) if k else float("nan"),
                }
            rec["curves"] = {}
            for col in ("target_score", "seed_score", "seed_score_nosteer"):
                order = np.argsort(-rows[col], kind="stable")
                rec["curves"][col] = [float(on["both"][order[:k]].mean()) for k in range(1, len(order) + 1)]
            rec["samples"] = [
                {
                    "text": texts[i],
                    "target_score": round(float(rows["target_score"][i]), 3),
                    "seed_score": round(float(rows["seed_score"][i]), 3),
                    "seed_score_nosteer": round(float(rows["seed_score_nosteer"][i]), 3),
                    **{f"p_{j}": round(float(p[j][i]), 3) for j in p},
                    "ppl": round(float(ppl[i]), 1),
                }
                for i in range(len(texts))
            ]
            out.append(rec)
            r = rec["none"]
            print(
                f"  [{name}] {arm:14s} s={s:<4g} n={len(texts)} on-target tfidf {r['on_tfidf']:.2f} hidden "
                f"{r['on_hidden']:.2f} both {r['on_both']:.2f} | seed filter kept {rec['seed']['kept']} "
                f"both {rec['seed']['on_both']:.2f} | target filter kept {rec['target']['kept']} "
                f"both {rec['target']['on_both']:.2f}",
                flush=True,
            )
    return out


def verdicts(js: list, texts: list[str]) -> dict[str, np.ndarray]:
    """Each judge's on-target call of each text, and "both": every judge agrees."""
    on = {j.name: j.on_target(texts) for j in js}
    on["both"] = np.logical_and.reduce(list(on.values()))
    return on


def judge_reference(run: NicheRun, js: list) -> dict:
    """The judges' on-target rates on real texts of the niche that neither judge trained on: the user's seeds and
    the corpus's labelled positives. What a synthesized row's rate reads against: the judges, at 5% false
    positives, do not call every real example on target either."""
    out = {}
    for name, texts in (
        ("seeds", [s["text"] for s in run.niche.seeds]),
        ("corpus_positives", [r["text"] for r in run.niche.corpus if r["label"]]),
    ):
        on = verdicts(js, texts)
        out[name] = {"n": len(texts), **{f"on_{k}": float(v.mean()) for k, v in on.items()}}
    return out


def reference_line(ref: dict) -> str:
    """`judge_reference`'s rates as one line of a report."""
    return "real texts, for reference (on target tfidf / hidden / both): " + "; ".join(
        f"{k.replace('_', ' ')} ({v['n']}) {_fmt(v['on_tfidf'])} / {_fmt(v['on_hidden'])} / {_fmt(v['on_both'])}"
        for k, v in ref.items()
    )


def judge_output(name: str, cfg, encoder: Encoder, parquet: str) -> None:
    """The niche's judges on a pipeline's kept rows: what `make demo` keeps, judged by what is not the SAE."""
    import pyarrow.parquet as pq

    js = judges(NicheRun(name, cfg, encoder))
    t = pq.read_table(parquet, columns=["source", "text"])
    sources, texts = t["source"].to_pylist(), [x or "" for x in t["text"].to_pylist()]
    on = verdicts(js, texts)
    print(f"{parquet}: {len(texts)} rows; judges " + "; ".join(f"{j.name} {j.validation}" for j in js))
    for src in dict.fromkeys(sources):
        rows = np.array([s == src for s in sources])
        rates = " ".join(f"{k} {v[rows].mean():.2f}" for k, v in on.items())
        print(f"  {src}: {int(rows.sum())} rows, on target: {rates}")


def _fmt(x, nd=2):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def report(recs: list[dict]) -> str:
    lines = []
    for niche in dict.fromkeys(r["niche"] for r in recs):
        sub = [r for r in recs if r["niche"] == niche]
        jv = sub[0]["judges"]
        lines.append(
            f"\n### {niche}  (seed-classifier cut-off {sub[0]['cutoff']:.3f}; judges (5-fold CV on their own "
            "data): "
            + "; ".join(
                f"{k} AUROC {v.get('auroc', float('nan')):.3f} TPR {v.get('tpr', 0):.2f} "
                f"FPR {v.get('fpr', 0):.2f} at {v.get('threshold', 0.5):.3f} ({v['n_pos']}+{v['n_neg']})"
                for k, v in jv.items()
            )
            + ")"
        )
        if sub[0].get("reference"):
            lines.append(reference_line(sub[0]["reference"]))
        lines.append(
            "| arm | strength | filter | kept / n | on-target tfidf | hidden | both | distinct-2 | ppl (median)"
            " | LCS seed / corpus (words) | 3-gram overlap seed / corpus |"
        )
        lines.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in sub:
            for f in FILTERS:
                x = r[f]
                lines.append(
                    f"| {r['arm']} | {r['strength']:g} | {f} | {x['kept']} / {r['n']} | {_fmt(x['on_tfidf'])} | "
                    f"{_fmt(x['on_hidden'])} | {_fmt(x['on_both'])} | {_fmt(x['distinct2'])} | "
                    f"{_fmt(x['ppl_median'], 1)} | {_fmt(x['seed_lcs_median'], 0)} / "
                    f"{_fmt(x['corpus_lcs_median'], 0)} | {_fmt(x['seed_overlap_median'])} / "
                    f"{_fmt(x['corpus_overlap_median'])} |"
                )
        lines.append("\nprecision-yield (on target by both judges among the top k by each score; k = 4, 8, 16, all):")
        for r in sub:
            cells = []
            for col, c in r["curves"].items():
                ks = [k for k in (4, 8, 16) if k < len(c)] + [len(c)]
                cells.append(f"{col} " + " ".join(_fmt(c[k - 1]) for k in ks))
            lines.append(f"- {r['arm']} s={r['strength']:g}: " + "; ".join(cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--niches", nargs="+", default=list(NICHES))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument(
        "--strengths",
        nargs="+",
        default=["1", "2"],
        help="steering strengths of the steered arms, or auto: each niche's pilot picks one, as "
        "`synthesis.strengths: auto` does",
    )
    ap.add_argument("--n", type=int, default=24, help="generations per arm and strength")
    ap.add_argument("--out", default=None, help="write the per-arm records (JSON) here")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("QSCOPE_BENCH_THREADS", "1")))
    ap.add_argument(
        "--corpus-signatures",
        nargs="*",
        default=[],
        help="pipeline corpus stores (e.g. "
        "out/demo/corpus_signatures) to take corpus signatures from instead of encoding",
    )
    ap.add_argument(
        "--judge-max",
        type=int,
        default=None,
        help="at most this many judge texts per class (random, fixed seed): the hidden-state judge encodes every one",
    )
    ap.add_argument(
        "--syn",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="synthesis settings over the demo's (YAML values), e.g. n_shots=4 temperature=0.5",
    )
    ap.add_argument(
        "--judge-fpr",
        type=float,
        default=0.05,
        help="each judge's threshold: the lowest at which this share of its real negatives passes (out-of-fold); "
        "0 = the plain 0.5 of a balanced logistic regression",
    )
    ap.add_argument(
        "--judge-output",
        metavar="PARQUET",
        help="judge a pipeline's samples.parquet (e.g. out/demo/samples.parquet) with the first --niches' judges: "
        "on-target rate per source (synthesized, mined), then stop",
    )
    ap.add_argument(
        "--target-precision",
        type=float,
        default=None,
        help="mining.target_precision: the precision the seed-classifier cut-off (min_seed_score: auto) aims for",
    )
    ap.add_argument(
        "--no-read-text",
        action="store_true",
        help="mining.read_text: false (the seed classifier without its TF-IDF view, as before 2026-12-04)",
    )
    ap.add_argument("--encode-only", action="store_true", help="encode seeds and corpora (slow), then stop")
    ap.add_argument(
        "--shard",
        default="0/1",
        help="with --encode-only: encode every n-th chunk (i/n), so two 1-thread processes share a busy 2-core machine",
    )
    args = ap.parse_args()
    global SHARD
    SHARD = tuple(int(x) for x in args.shard.split("/"))
    STORES[:] = args.corpus_signatures
    import yaml

    for kv in args.syn:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"--syn takes KEY=VALUE, not {kv!r}")
        SYN_OVERRIDES[key] = yaml.safe_load(value)
    global JUDGE_MAX
    JUDGE_MAX = args.judge_max
    global JUDGE_FPR
    JUDGE_FPR = args.judge_fpr or None
    import torch

    torch.set_num_threads(args.threads)
    cfg = demo_config()
    if args.target_precision is not None:
        cfg.mining.target_precision = args.target_precision
    cfg.mining.read_text = not args.no_read_text
    encoder = Encoder(cfg)
    t0 = time.time()
    recs = []
    if args.judge_output:
        judge_output(args.niches[0], cfg, encoder, args.judge_output)
        return
    if args.encode_only:
        for name in args.niches:
            NicheRun(name, cfg, encoder)
        return
    for name in args.niches:
        recs += evaluate_niche(name, cfg, encoder, args.arms, args.strengths, args.n)
    write_records(recs, args.out, OUT / "results.json", report, t0)


if __name__ == "__main__":
    main()
