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
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("QSCOPE_HOME", Path.home() / ".cache" / "qscope")).expanduser() / "bench"
LAYER = 15
MAX_TOKENS = 64  # texts are cut to 64 tokens: the CPU forward is the bottleneck here (~75-300 tok/s when shared)

PROBE_TASKS = {
    # the first five: the tasks of the earlier table; the rest widen the panel for issue 14 (item 5)
    "agnews_world": "161_agnews_0",
    "agnews_sports": "162_agnews_1",
    "news_tech": "140_news_class_Technology",
    "spam": "96_spam_is",
    "code_python": "159_code_Python",
    "movie_sent": "113_movie_sent",
    "toxic": "95_toxic_is",
    "hate": "106_hate_hate",
    "news_politics": "139_news_class_Politics",
    "twt_worry": "148_twt_emotion_worry",
    "clickbait": "105_click_bait",
    "amazon_5star": "157_amazon_5star",
    "headline_china": "23_headline_ischina",
    "it_hardware": "152_it_tick_Hardware",
    "disease_digestive": "145_disease_class_digestive system diseases",
}
SEED_POOL_PER_CLASS = 40
TEST_PER_CLASS = 150  # a balanced test pool of 300, as in the classify check


def positive_label(labels) -> str:
    """The task's positive class: "1" / "True" for the binary tasks, else the first name in sorted order."""
    names = sorted(set(labels))
    for p in ("1", "True", "true"):
        if p in names:
            return p
    return names[0]


# --------------------------------------------------------------------------------------------- datasets
def load_dataset(name: str) -> dict:
    """{texts, labels (0/1), seed_pool (indices), test (indices), setting} — deterministic."""
    rng = np.random.default_rng(0)
    if name == "debian_hamradio":
        seeds = [json.loads(x) for x in open(REPO / "data/demo/seeds.jsonl")]
        corpus = [json.loads(x) for x in open(REPO / "data/demo/corpus.jsonl")]
        pos = [r for r in corpus if r["section"] == "hamradio"]
        neg = [r for r in corpus if r["section"] != "hamradio"]
        neg = [neg[i] for i in sorted(rng.choice(len(neg), 120, replace=False))]
        test = pos + neg
        texts = [r["text"] for r in seeds] + [r["text"] for r in test]
        labels = np.array([1] * len(seeds) + [1] * len(pos) + [0] * len(neg))
        return dict(
            texts=texts,
            labels=labels,
            seed_pool=np.arange(len(seeds)),
            test=np.arange(len(seeds), len(texts)),
            setting="mine",
        )
    from qscope.data.probes import read_task

    rows = read_task(PROBE_TASKS[name])
    pos_label = positive_label([r["label"] for r in rows])
    y = np.array([1 if r["label"] == pos_label else 0 for r in rows])
    n = SEED_POOL_PER_CLASS + TEST_PER_CLASS
    pos = rng.permutation(np.flatnonzero(y == 1))[:n]
    neg = rng.permutation(np.flatnonzero(y == 0))[:n]
    pick = np.concatenate(
        [pos[:SEED_POOL_PER_CLASS], neg[:SEED_POOL_PER_CLASS], pos[SEED_POOL_PER_CLASS:], neg[SEED_POOL_PER_CLASS:]]
    )
    texts = [rows[i]["text"] for i in pick]
    k = 2 * SEED_POOL_PER_CLASS
    return dict(texts=texts, labels=y[pick], seed_pool=np.arange(k), test=np.arange(k, len(pick)), setting="classify")


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
            batch = texts[b0 : min(b0 + batch_size, c0 + chunk, len(texts))]
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
    out = dict(
        toks=np.concatenate([p["toks"] for p in parts]),
        offsets=np.concatenate([[0], np.cumsum(lens)]),
        means=np.concatenate([p["means"] for p in parts]).astype(np.float32),
    )
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

    torch.set_num_threads(int(os.environ.get("QSCOPE_BENCH_THREADS", "1")))  # 1: faster on a shared 2-core box
    lm = LanguageModel.load()
    for name in names:
        ds = load_dataset(name)
        encode_residuals(name, ds["texts"], lm)


ALL = ["debian_hamradio", *PROBE_TASKS]
SIG_TOP = 256  # cached signatures keep the top 256 latents; methods cut to their own top_n


# --------------------------------------------------------------------------------------------- SAE signatures
def load_bench_sae(spec: str | None = None):
    """`spec` (any load_sae spec), else the shipped default SAE when present, else a random TopK SAE (numbers then
    only test the plumbing)."""
    from qscope.sae import SAE, SAEConfig, load_sae
    from qscope.sae.loading import DEFAULT_SAE_ID, shipped_sae_ids

    if spec:
        return load_sae(spec), True
    if DEFAULT_SAE_ID in shipped_sae_ids():
        return load_sae(DEFAULT_SAE_ID), True
    import torch

    torch.manual_seed(0)
    cfg = SAEConfig(architecture="topk", d_in=576, d_sae=8192, k=32, hook_layer=LAYER, sae_id="random-topk-8192")
    return SAE.from_config(cfg), False


def sae_fingerprint(sae) -> str:
    w = sae.W_enc.detach()
    return hashlib.sha1(f"{sae.sae_id}|{float(w.sum()):.6e}|{float(w.abs().sum()):.6e}".encode()).hexdigest()[:10]


def encode_signatures(name: str, res: dict, sae) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """{pooling: [(ids, values) top-256 per text]} from cached residuals; cached per SAE fingerprint."""
    import torch

    from qscope.features import pool_signature

    f = CACHE / f"{name}-sig-{sae_fingerprint(sae)}-{len(res['means'])}.npz"
    poolings = ("max", "sum", "binary")
    if f.exists():
        with np.load(f) as npz:  # read each array once: NpzFile decompresses on every access
            z = {k: npz[k] for k in npz.files}
        return {
            p: [(z[f"{p}_ids"][a:b], z[f"{p}_vals"][a:b]) for a, b in zip(z[f"{p}_ptr"][:-1], z[f"{p}_ptr"][1:])]
            for p in poolings
        }
    idx_all, val_all = [], []
    with torch.no_grad():
        for s in range(0, len(res["toks"]), 4096):
            codes = sae.encode(torch.from_numpy(res["toks"][s : s + 4096].astype(np.float32)))
            idx_all.append(codes.indices.numpy())
            val_all.append(codes.values.float().numpy())
    idx, val = np.concatenate(idx_all), np.concatenate(val_all)
    out, arrays = {}, {}
    off = res["offsets"]
    for p in poolings:
        sigs = []
        for a, b in zip(off[:-1], off[1:]):
            ti = [r[v > 0] for r, v in zip(idx[a:b], val[a:b])]
            tv = [v[v > 0] for v in val[a:b]]
            sigs.append(pool_signature(ti, tv, p, SIG_TOP))
        out[p] = sigs
        lens = np.array([len(x[0]) for x in sigs])
        arrays[f"{p}_ptr"] = np.concatenate([[0], np.cumsum(lens)])
        arrays[f"{p}_ids"] = np.concatenate([x[0] for x in sigs])
        arrays[f"{p}_vals"] = np.concatenate([x[1] for x in sigs])
    tmp = f.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, f)
    return out


# --------------------------------------------------------------------------------------------- methods
def _pu_negatives(rng, test: np.ndarray, n: int) -> np.ndarray:
    """Mining: no labelled negatives; a random corpus sample stands in (the class is rare)."""
    return rng.choice(test, min(n, len(test)), replace=False)


def run_signature(
    sigs, d_sae, seeds_pos, seeds_neg, test, setting, method, top_n=64, transform="raw", use_idf=True, **kw
) -> np.ndarray:
    from qscope.classify import classify_corpus, mine_corpus

    cut = [(f[:top_n], v[:top_n]) for f, v in sigs]
    corpus = [cut[i] for i in test]
    if setting == "mine":
        return mine_corpus(
            [cut[i] for i in seeds_pos],
            None,
            corpus,
            None,
            d_sae,
            method=method,
            transform=transform,
            use_idf=use_idf,
            **kw,
        ).scores
    seeds = [cut[i] for i in seeds_pos] + [cut[i] for i in seeds_neg]
    labels = ["pos"] * len(seeds_pos) + ["neg"] * len(seeds_neg)
    out = classify_corpus(
        seeds, None, labels, corpus, None, d_sae, method=method, transform=transform, use_idf=use_idf, **kw
    )
    return out.scores[:, out.classes.index("pos")]


def run_tfidf(texts, seeds_pos, seeds_neg, test, rng) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)
    vec.fit([texts[i] for i in test] + [texts[i] for i in seeds_pos])  # IDF from the corpus, like the signatures
    x_tr = vec.transform([texts[i] for i in np.r_[seeds_pos, seeds_neg]])
    y = np.r_[np.ones(len(seeds_pos)), np.zeros(len(seeds_neg))]
    clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000).fit(x_tr, y)
    return clf.predict_proba(vec.transform([texts[i] for i in test]))[:, 1]


def run_hidden_lr(means, seeds_pos, seeds_neg, test) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(means[test])
    x = sc.transform(means[np.r_[seeds_pos, seeds_neg]])
    y = np.r_[np.ones(len(seeds_pos)), np.zeros(len(seeds_neg))]
    clf = LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000).fit(x, y)
    return clf.decision_function(sc.transform(means[test]))


def run_diffmean(means, seeds_pos, seeds_neg, test) -> np.ndarray:
    direction = means[seeds_pos].mean(0) - means[seeds_neg].mean(0)
    return means[test] @ direction


# --------------------------------------------------------------------------------------------- evaluation
def metrics(scores: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    order = np.argsort(-scores, kind="stable")
    r = int(y.sum())
    return {
        "auroc": roc_auc_score(y, scores),
        "auprc": average_precision_score(y, scores),
        "p@r": y[order[:r]].mean(),
        "p@10": y[order[:10]].mean(),
    }


def signature_methods(full: bool) -> dict[str, dict]:
    base = {
        "sig-probe": dict(method="probe"),
        "sig-centroid": dict(method="centroid"),
        "sig-knn": dict(method="knn", k=5),
        "sig-probe sum-pool log1p top256": dict(method="probe", pooling="sum", transform="log1p", top_n=256),
    }
    if full:
        base.update(
            {
                "sig-probe sum-pool": dict(method="probe", pooling="sum"),
                "sig-probe binary": dict(method="probe", transform="binary"),
                "sig-probe no-idf": dict(method="probe", use_idf=False),
                "sig-probe top256": dict(method="probe", top_n=256),
                "sig-probe log1p top256": dict(method="probe", transform="log1p", top_n=256),
                "sig-centroid top256": dict(method="centroid", top_n=256),
                "sig-probe log1p": dict(method="probe", transform="log1p"),
                "sig-knn top256": dict(method="knn", k=5, top_n=256),
            }
        )
    return base


def evaluate(name: str, ns: list[int], draws: int, full: bool, sae, first_draw: int = 0) -> list[dict]:
    ds = load_dataset(name)
    res = encode_residuals(name, ds["texts"])
    sigs = encode_signatures(name, res, sae)
    y, test, pool = ds["labels"], ds["test"], ds["seed_pool"]
    y_test = y[test]
    rows = []
    for n in ns:
        pos_pool = pool[y[pool] == 1]
        if n > len(pos_pool):
            print(f"  [{name}] N={n}: only {len(pos_pool)} positive seeds available, skipped", flush=True)
            continue
        for d in range(first_draw, first_draw + draws):
            rng = np.random.default_rng(1000 * n + d)
            sp_ = rng.choice(pos_pool, n, replace=False)
            if ds["setting"] == "mine":
                sn = _pu_negatives(rng, test, max(4 * n, 64))
            else:
                sn = rng.choice(pool[y[pool] == 0], n, replace=False)
            results = {
                "TF-IDF+LR": run_tfidf(ds["texts"], sp_, sn, test, rng),
                "hidden mean LR": run_hidden_lr(res["means"], sp_, sn, test),
                "DiffMean": run_diffmean(res["means"], sp_, sn, test),
            }
            if DEFAULT_ONLY and ds["setting"] == "classify":  # item 5's check: the baselines and the default only
                results[PIPELINE_DEFAULT] = _pipeline_scores(ds, res, sigs["sum"], sae, sp_, sn, test)
            for label, cfg in ({} if DEFAULT_ONLY else signature_methods(full)).items():
                cfg = dict(cfg)
                pooling = cfg.pop("pooling", "max")
                results[label] = run_signature(
                    sigs[pooling], sae.d_sae, sp_, sn if ds["setting"] == "classify" else [], test, ds["setting"], **cfg
                )
            if ENSEMBLES and ds["setting"] == "classify":
                results.update(ensemble_methods(ds, res, sigs, sae, sp_, sn, test, rng, results))
            for method, scores in results.items():
                rows.append({"dataset": name, "n": n, "draw": d, "method": method, **metrics(scores, y_test)})
    return rows


# --------------------------------------------------------------------------------------------- ensembles (item 5)
ENSEMBLES = False
DEFAULT_ONLY = False
PIPELINE_DEFAULT = "qscope classify default: sig+hidden+tfidf probe"
DEFAULT_SIG = dict(method="probe", transform="log1p", top_n=256)  # `qscope classify`'s default (sum pooling)


def _z(x: np.ndarray) -> np.ndarray:
    """Scores standardised over the scored pool (what the pipeline can do with its background sample)."""
    return (x - x.mean()) / (x.std() + 1e-9)


def _components(ds, res, sigs, sae, pos, neg, evaluate_on, rng) -> dict[str, np.ndarray]:
    """Each component's scores of `evaluate_on`, fitted on pos / neg (IDF / scaling from the test pool)."""
    test = ds["test"]
    out = {
        "sig": _sig_scores(sigs["sum"], sae.d_sae, pos, neg, test, evaluate_on, **DEFAULT_SIG),
        "tfidf": _tfidf_scores(ds["texts"], pos, neg, test, evaluate_on),
        "hidden": _hidden_scores(res["means"], pos, neg, test, evaluate_on),
        "joint": _joint_scores(sigs["sum"], res["means"], sae.d_sae, pos, neg, test, evaluate_on),
    }
    return out


def _sig_scores(sigs, d_sae, pos, neg, pool, evaluate_on, top_n=256, **kw):
    from qscope.classify import SignatureClassifier

    cut = [(f[:top_n], v[:top_n]) for f, v in sigs]
    clf = SignatureClassifier(d_sae, **kw).fit(
        [cut[i][0] for i in np.r_[pos, neg]],
        [cut[i][1] for i in np.r_[pos, neg]],
        ["pos"] * len(pos) + ["neg"] * len(neg),
        [cut[i][0] for i in pool],
        [cut[i][1] for i in pool],
    )
    r = clf.decision_scores([cut[i][0] for i in evaluate_on], [cut[i][1] for i in evaluate_on])
    p = np.clip(r.scores[:, r.classes.index("pos")].astype(float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _tfidf_scores(texts, pos, neg, pool, evaluate_on):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)
    vec.fit([texts[i] for i in pool] + [texts[i] for i in pos])
    clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000).fit(
        vec.transform([texts[i] for i in np.r_[pos, neg]]), np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    )
    return clf.decision_function(vec.transform([texts[i] for i in evaluate_on]))


def _hidden_scores(means, pos, neg, pool, evaluate_on, C=0.1):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(means[pool])
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=2000).fit(
        sc.transform(means[np.r_[pos, neg]]), np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    )
    return clf.decision_function(sc.transform(means[evaluate_on]))


def _joint_scores(sigs, means, d_sae, pos, neg, pool, evaluate_on, top_n=256, C=3.0):
    """`qscope.classify`'s probe over both views of a text: the signature vector (sum-pooled top-256, log1p, IDF)
    next to the mean hidden state (standardised over the pool, scaled to norm ~3), as log-odds."""
    from qscope.classify import SignatureClassifier

    cut = [(f[:top_n], v[:top_n]) for f, v in sigs]
    train = np.r_[pos, neg]
    clf = SignatureClassifier(d_sae, method="probe", transform="log1p", C=C).fit(
        [cut[i][0] for i in train],
        [cut[i][1] for i in train],
        ["pos"] * len(pos) + ["neg"] * len(neg),
        [cut[i][0] for i in pool],
        [cut[i][1] for i in pool],
        dense=means[train],
        background_dense=means[pool],
    )
    r = clf.decision_scores([cut[i][0] for i in evaluate_on], [cut[i][1] for i in evaluate_on], means[evaluate_on])
    p = np.clip(r.scores[:, r.classes.index("pos")].astype(float), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _pipeline_scores(ds, res, sigs, sae, pos, neg, test, top_n=256) -> np.ndarray:
    """`qscope classify`'s own seed classifier (`qscope.seed_model.fit_seed_classifier`, what the Classify
    operator fits): seeds with their signatures, hidden means and texts; the scored pool as the background sample
    (what the pipeline samples from its corpus). Log-odds of "pos"."""
    from dataclasses import asdict

    from qscope import seed_model
    from qscope.signatures import SignatureMeta

    cut = [(f[:top_n], v[:top_n]) for f, v in sigs]
    train = np.r_[pos, neg]
    meta = SignatureMeta("bench", sae.sae_id, LAYER, "sum", top_n, sae.d_sae, hidden_mean=True)
    labels = ["pos"] * len(pos) + ["neg"] * len(neg)
    seeds = seed_model.SeedSignatures(
        [str(i) for i in train],
        [cut[i][0].tolist() for i in train],
        [cut[i][1].tolist() for i in train],
        asdict(meta),
        labels,
        res["means"][train].tolist(),
        [ds["texts"][i] for i in train],
    )
    background = {
        "feature_ids": [cut[i][0].tolist() for i in test],
        "feature_values": [cut[i][1].tolist() for i in test],
        "hidden_mean": res["means"][test].tolist(),
        "text": [ds["texts"][i] for i in test],
    }
    clf = seed_model.fit_seed_classifier(seeds, background, "probe", labels=labels)
    r = clf.decision_scores(
        background["feature_ids"], background["feature_values"], background["hidden_mean"], background["text"]
    )
    p = np.clip(r.scores[:, r.classes.index("pos")].astype(float), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _cv_auroc(ds, res, sigs, sae, pos, neg, rng, folds=4) -> dict[str, float]:
    """Each component's AUROC on held-out seeds (stratified `folds`-fold CV over the labelled seeds)."""
    from sklearn.metrics import roc_auc_score

    fp, fn = rng.permutation(len(pos)) % folds, rng.permutation(len(neg)) % folds
    scores: dict[str, list] = {}
    ys = []
    for f in range(folds):
        held = np.r_[pos[fp == f], neg[fn == f]]
        comp = _components(ds, res, sigs, sae, pos[fp != f], neg[fn != f], held, rng)
        for k, v in comp.items():
            scores.setdefault(k, []).append(v)
        ys.append(np.r_[np.ones((fp == f).sum()), np.zeros((fn == f).sum())])
    # per-fold scores are on different scales: rank within each fold's AUROC instead of pooling raw scores
    out = {}
    for k, parts in scores.items():
        aucs = [roc_auc_score(yy, pp) for yy, pp in zip(ys, parts) if 0 < yy.sum() < len(yy)]
        out[k] = float(np.mean(aucs)) if aucs else 0.5
    return out


def ensemble_methods(ds, res, sigs, sae, pos, neg, test, rng, results) -> dict[str, np.ndarray]:
    comp = _components(ds, res, sigs, sae, pos, neg, test, rng)
    z = {k: _z(v) for k, v in comp.items()}
    out = {
        "ens sig+tfidf": (z["sig"] + z["tfidf"]) / 2,
        "ens sig+hidden": (z["sig"] + z["hidden"]) / 2,
        "ens sig+hidden+tfidf": (z["sig"] + z["hidden"] + z["tfidf"]) / 3,
        "ens hidden+tfidf": (z["hidden"] + z["tfidf"]) / 2,
    }
    cv = _cv_auroc(ds, res, sigs, sae, pos, neg, rng)
    for keys, label in (
        (("sig", "tfidf"), "cv-weighted sig+tfidf"),
        (("sig", "hidden", "tfidf"), "cv-weighted sig+hidden+tfidf"),
    ):
        w = {k: max(cv[k] - 0.5, 0.0) ** 2 + 1e-3 for k in keys}
        out[label] = sum(w[k] * z[k] for k in keys) / sum(w.values())
        best = max(keys, key=lambda k: cv[k])
        out[f"cv-best of {'+'.join(keys)}"] = z[best]
    out["joint sig+hidden probe"] = comp["joint"]
    out[PIPELINE_DEFAULT] = _pipeline_scores(ds, res, sigs["sum"], sae, pos, neg, test)
    out["joint + 0.5 tfidf"] = (z["joint"] + 0.5 * z["tfidf"]) / 1.5
    w = {k: max(cv[k] - 0.5, 0.0) ** 2 + 1e-3 for k in ("joint", "tfidf")}
    w["tfidf"] *= 0.5  # TF-IDF weighs in when the seeds' CV says the task is lexical, at half the joint probe's say
    out["joint + cv-weighted tfidf"] = (w["joint"] * z["joint"] + w["tfidf"] * z["tfidf"]) / sum(w.values())
    return out


def criterion(rows: list[dict], n: int) -> str:
    """Per method: tasks where it is >= the best baseline (mean AUROC over draws), worst gap, mean AUROC."""
    import polars as pl

    df = pl.DataFrame(rows).filter((pl.col("n") == n) & (pl.col("dataset") != "debian_hamradio"))
    per = df.group_by(["dataset", "method"]).agg(pl.col("auroc").mean())
    best = (
        per.filter(pl.col("method").is_in(list(BASELINES))).group_by("dataset").agg(pl.col("auroc").max().alias("best"))
    )
    j = per.join(best, on="dataset").with_columns((pl.col("auroc") - pl.col("best")).alias("gap"))
    s = (
        j.group_by("method")
        .agg(
            (pl.col("gap") >= -1e-9).mean().alias("share_ge"),
            pl.col("gap").min().alias("worst"),
            pl.col("auroc").mean().alias("mean"),
            pl.len().alias("tasks"),
        )
        .sort("share_ge", "worst", descending=True)
    )
    lines = [
        f"\nN = {n}: against the best baseline per task ({', '.join(BASELINES)}); goal: share >= 0.6, worst >= -0.02",
        "| method | tasks >= best baseline | worst gap | mean AUROC |",
        "|---|---:|---:|---:|",
    ]
    for r in s.iter_rows(named=True):
        lines.append(
            f"| {r['method']} | {r['share_ge']:.2f} ({round(r['share_ge'] * r['tasks'])}/{r['tasks']}) | "
            f"{r['worst']:+.3f} | {r['mean']:.3f} |"
        )
    return "\n".join(lines)


BASELINES = ("TF-IDF+LR", "hidden mean LR", "DiffMean")


def gaps(rows: list[dict], n: int, method: str) -> str:
    """`method`'s AUROC minus the best baseline's, per task (mean over draws), worst first."""
    import polars as pl

    df = pl.DataFrame(rows).filter((pl.col("n") == n) & (pl.col("dataset") != "debian_hamradio"))
    per = df.group_by(["dataset", "method"]).agg(pl.col("auroc").mean())
    best = (
        per.filter(pl.col("method").is_in(list(BASELINES))).sort("auroc", descending=True).group_by("dataset").first()
    )
    mine = per.filter(pl.col("method") == method).join(best, on="dataset", suffix="_best")
    mine = mine.with_columns((pl.col("auroc") - pl.col("auroc_best")).alias("gap")).sort("gap")
    cells = [
        f"{r['dataset']} {r['gap']:+.3f} ({r['auroc']:.3f} vs {r['method_best']} {r['auroc_best']:.3f})"
        for r in mine.iter_rows(named=True)
    ]
    return f"\n{method}, gap to the best baseline per task: " + "; ".join(cells)


def report(rows: list[dict]) -> str:
    import polars as pl

    df = pl.DataFrame(rows)
    per = df.group_by(["dataset", "n", "method"]).agg(
        [pl.col(m).mean().alias(m) for m in ("auroc", "auprc", "p@r", "p@10")] + [pl.col("auroc").std().alias("sd")]
    )
    lines = []
    for n in sorted(df["n"].unique()):
        sub = per.filter(pl.col("n") == n)
        datasets = sorted(sub["dataset"].unique())
        methods = sub.group_by("method").agg(pl.col("auroc").mean()).sort("auroc", descending=True)["method"]
        lines.append(f"\nN = {n} seeds per class — AUROC (mean over draws) per dataset; mean AUROC / AUPRC / P@R")
        lines.append("| method | " + " | ".join(datasets) + " | mean AUROC | mean AUPRC | mean P@R |")
        lines.append("|---|" + "---:|" * (len(datasets) + 3))
        for m in methods:
            r = sub.filter(pl.col("method") == m)
            cells = []
            for dname in datasets:
                x = r.filter(pl.col("dataset") == dname)
                cells.append(f"{x['auroc'][0]:.3f}±{x['sd'][0]:.3f}" if len(x) else "-")
            lines.append(
                f"| {m} | "
                + " | ".join(cells)
                + f" | {r['auroc'].mean():.3f} | {r['auprc'].mean():.3f} | {r['p@r'].mean():.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 datasets, N in {4, 16}, 5 draws, main methods")
    ap.add_argument("--datasets", nargs="+", default=None)
    ap.add_argument("--n", type=int, nargs="+", default=None)
    ap.add_argument("--draws", type=int, default=None)
    ap.add_argument(
        "--first-draw", type=int, default=0, help="first seed draw (fresh draws check a choice made on others)"
    )
    ap.add_argument("--encode-only", action="store_true")
    ap.add_argument("--sae", default=None, help="SAE to read (load_sae spec); default: the shipped one")
    ap.add_argument("--cached-only", action="store_true", help="evaluate only datasets whose residuals are cached")
    ap.add_argument("--out", default=None, help="also write the per-draw rows as JSONL")
    ap.add_argument(
        "--ensembles",
        action="store_true",
        help="also score ensembles of signature, TF-IDF and "
        "hidden-state classifiers and print the issue-14 criterion (>= best baseline per task)",
    )
    ap.add_argument(
        "--default-only",
        action="store_true",
        help="score only the baselines and `qscope classify`'s default seed classifier, and print the issue-14 "
        "criterion (item 5's check in a few minutes)",
    )
    args = ap.parse_args()
    global ENSEMBLES, DEFAULT_ONLY
    ENSEMBLES, DEFAULT_ONLY = args.ensembles, args.default_only
    import torch

    torch.set_num_threads(int(os.environ.get("QSCOPE_BENCH_THREADS", "1")))  # 1: faster on a shared 2-core box
    names = args.datasets or (["agnews_world", "spam", "debian_hamradio"] if args.quick else ALL)
    if args.encode_only:
        return main_encode(names)
    missing = [n for n in names if not _cache_file(n, load_dataset(n)["texts"], _default_model()).exists()]
    if missing and args.cached_only:
        print(f"skipping datasets without cached residuals: {missing}")
        names = [n for n in names if n not in missing]
    elif missing:
        print(f"encoding residuals for {missing} first (slow, cached afterwards)", flush=True)
        main_encode(missing)
    sae, trained = load_bench_sae(args.sae)
    print(f"SAE: {sae.sae_id} ({'shipped' if trained else 'RANDOM - plumbing check only'}), d_sae={sae.d_sae}")
    ns = args.n or ([4, 16] if args.quick else [4, 16, 64])
    draws = args.draws or (5 if args.quick else 10)
    t0 = time.time()
    rows = []
    for name in names:
        t = time.time()
        rows += evaluate(name, ns, draws, full=not args.quick, sae=sae, first_draw=args.first_draw)
        print(f"  [{name}] evaluated in {time.time() - t:.0f}s", flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    print(report(rows))
    for n in ns:
        print(criterion(rows, n))
        if ENSEMBLES or DEFAULT_ONLY:
            print(gaps(rows, n, PIPELINE_DEFAULT))
    print(f"\ntotal {time.time() - t0:.0f}s; load average {os.getloadavg()[0]:.1f}")


def _default_model() -> str:
    from qscope.models.resolve import DEFAULT_MODEL

    return DEFAULT_MODEL


if __name__ == "__main__":
    main()
