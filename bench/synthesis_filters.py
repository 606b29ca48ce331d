"""Filter levers on every generation bench/synthesis.py has cached, pooled (issue 14, item 2).

One replicate of 48 generations keeps 8-14 rows on a niche like Debian electronics, so one row moves its on-target
rate by 0.07-0.12 and two replicates disagreed (1.00 vs 0.69). Pooling every cached generation of a niche (all arms,
strengths, shot counts and replicates, deduplicated by text) gives hundreds of rows to compare filter levers on,
with no new generation. Each lever keeps rows as the pipeline would (target_score >= 0.15, the text checks, the
seed classifier's score with the steered features removed >= the cut-off, dedup); the judges are
bench/synthesis.py's (trained on real labels, disjoint from seeds and corpus). Levers:

    pipeline            the default: cut-off for mining.target_precision 0.8 from the seeds' held-out scores
    precision P         the cut-off for target precision P instead (P in --precisions)
    leave shots out     each row scored by a seed classifier fitted without the seeds its prompt showed (the
                        held-out scores the cut-off calibrates on come from classifiers that did not see those
                        seeds either); one fit per distinct shot set: minutes (--leave-shots-out)
    hidden view         the seed classifier also reads each row's mean hidden state at the SAE layer
                        (`signatures.hidden_mean: true`); encodes seeds, corpus and generations again (--hidden-view)

Also printed: the judges' on-target rates on real texts of the niche that neither judge trained on (the seeds,
the corpus's labelled positives), and the on-target rate of the top k kept rows by seed score.

    PYTHONPATH=. python bench/synthesis_filters.py --niches electronics hamradio biology sports_news
    PYTHONPATH=. python bench/synthesis_filters.py --niches electronics --leave-shots-out --hidden-view
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthesis as S  # noqa: E402


def pooled(run: S.NicheRun) -> pa.Table:
    """Every scored generation cached for the niche, one row per distinct text."""
    parts = [pq.read_table(p) for p in sorted((S.OUT / run.name).glob("scored-*.parquet"))]
    if not parts:
        raise SystemExit(f"{run.name}: nothing cached under {S.OUT / run.name}; run bench/synthesis.py first")
    t = pa.concat_tables(parts, promote_options="permissive")
    texts = np.array([x or "" for x in t["text"].to_pylist()], dtype=object)
    _, first = np.unique(texts, return_index=True)
    return t.take(pa.array(np.sort(first)))


def leave_shots_out(run: S.NicheRun, table: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Seed scores of `rows`, each from a classifier fitted on the seeds its prompt did not show."""
    from qscope.pipelines.expand import without_steered_features
    from qscope.seed_model import SeedModel, seed_scores

    out = np.full(table.num_rows, np.nan)
    groups: dict[tuple, list[int]] = {}
    for i in rows:
        groups.setdefault(tuple(sorted(table["seed_ids"][int(i)].as_py() or [])), []).append(int(i))
    stripped = without_steered_features(table)
    for shots, idx in groups.items():
        seeds = run.seed_table.filter(pc.invert(pc.is_in(run.seed_table["id"], pa.array(list(shots), pa.string()))))
        m = SeedModel.fit(seeds, run.corpus_table, run.meta, method=run.cfg.mining.method, k=run.cfg.mining.k)
        out[idx] = seed_scores(m.classifier(), stripped.take(pa.array(idx))).scores[:, 0]
    print(f"  [{run.name}] leave shots out: {len(groups)} classifiers", flush=True)
    return out


def hidden_view(run: S.NicheRun, table: pa.Table) -> tuple:
    """(seed model, scores of `table`, scores of the corpus) with the mean hidden state as a third view; seeds,
    corpus and generations encoded again by the bench's cached encoder with `signatures.hidden_mean` on."""
    import copy

    from qscope.operators.base import set_column
    from qscope.pipelines.expand import without_steered_features
    from qscope.seed_model import SeedModel, seed_scores

    cfg = copy.deepcopy(run.cfg)
    cfg.signatures.hidden_mean = True
    encoder = S.Encoder(cfg)
    seeds = encoder.table(f"{run.name}-seeds", run.niche.seeds)
    corpus = encoder.table(f"{run.corpus_key}-corpus", run.niche.corpus)
    # an empty generation is encoded as "." so that every row has a hidden state to score
    rows = [
        {"id": i, "text": x if (x or "").strip() else "."}
        for i, x in zip(table["id"].to_pylist(), table["text"].to_pylist())
    ]
    hidden = encoder.table(f"{run.name}-gens", rows)["hidden_mean"]
    gens = set_column(without_steered_features(table), "hidden_mean", hidden)
    m = SeedModel.fit(seeds, corpus, run.meta, method=cfg.mining.method, k=cfg.mining.k)
    clf = m.classifier()
    return m, seed_scores(clf, gens).scores[:, 0], seed_scores(clf, corpus).scores[:, 0]


def evaluate(name: str, cfg, encoder, precisions, lso: bool, hidden: bool) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    run = S.NicheRun(name, cfg, encoder, cfg.mining.target_precision)
    js = S.judges(run)
    t = pooled(run)
    texts = [x or "" for x in t["text"].to_pylist()]
    on = S.verdicts(js, texts)["both"]
    base = {"text": texts, "target_score": np.asarray(t["target_score"].to_pylist(), float)}
    full = S.seed_scores(run, t, True)
    print(f"\n### {name}: {len(texts)} distinct cached generations, {on.mean():.2f} on target by both judges")
    print(S.reference_line(S.judge_reference(run, js)))
    print(
        f"seed score vs the judges over all generations: AUROC {roc_auc_score(on, full):.3f}"
        if 0 < on.mean() < 1
        else ""
    )
    print("| lever | cut-off | kept | on target (both) |\n|---|---:|---:|---:|")

    def line(label: str, scores: np.ndarray, cutoff) -> np.ndarray:
        run.cutoff = cutoff
        kept = S.apply_filter("target+seed", run, {**base, "seed_score_nosteer": scores}, np.arange(len(texts)))
        print(f"| {label} | {cutoff.cutoff:.3f} | {len(kept)} | {on[kept].mean() if len(kept) else float('nan'):.2f} |")
        return kept

    default = run.cutoff  # NicheRun's, for mining.target_precision (line() replaces run.cutoff as it goes)
    kept = line("pipeline", full, default)
    for p in precisions:
        line(f"precision {p:g}", full, run.model.mining_cutoff(p))
    if lso:
        # only rows the rest of the filter lets through can be kept: those are the ones scored again (taken with
        # every seed score tied, so of two near-duplicates dedup keeps the earlier one; the other is not rescored)
        ok = S.apply_filter(
            "target+seed", run, {**base, "seed_score_nosteer": np.ones(len(texts))}, np.arange(len(texts))
        )
        line("leave shots out", np.nan_to_num(leave_shots_out(run, t, ok), nan=0.0), default)
    if hidden:
        m, scores, corpus_scores = hidden_view(run, t)
        line("hidden view", scores, m.mining_cutoff(cfg.mining.target_precision))
        y = np.array([r["label"] for r in run.niche.corpus])
        flat = S.seed_scores(run, run.corpus_table, False)
        print(
            f"mining AP on the corpus's labels: {average_precision_score(y, flat):.3f} -> hidden view "
            f"{average_precision_score(y, corpus_scores):.3f}"
        )
    order = kept[np.argsort(-full[kept], kind="stable")]
    ks = [k for k in (25, 50, 100, 200) if k < len(order)] + [len(order)]
    print("top k kept by seed score, on target: " + ", ".join(f"{k}: {on[order[:k]].mean():.2f}" for k in ks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--niches", nargs="+", default=list(S.NICHES))
    ap.add_argument("--precisions", nargs="*", type=float, default=[0.9, 0.95])
    ap.add_argument("--leave-shots-out", action="store_true")
    ap.add_argument("--hidden-view", action="store_true")
    ap.add_argument("--judge-max", type=int, default=300)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("QSCOPE_BENCH_THREADS", "1")))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    S.JUDGE_MAX = args.judge_max
    cfg = S.demo_config()
    encoder = S.Encoder(cfg)
    t0 = time.time()
    for name in args.niches:
        evaluate(name, cfg, encoder, args.precisions, args.leave_shots_out, args.hidden_view)
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
