"""The shipped Qwen SAE (`qwen2.5-coder-0.5b-l12`): files, size, quality bars, Qwen-Scope export on real residuals."""

from __future__ import annotations

import json

import pytest
import torch

from qscope.evaluation import load_texts
from qscope.evaluation.feature_stats import FEATURE_STATS_FILE, FeatureStats
from qscope.paths import qscope_home
from qscope.sae import load_sae, qwen_scope_repo_name, save_qwen_scope
from qscope.sae.loading import shipped_sae_dir

QWEN_SAE = "qwen2.5-coder-0.5b-l12"
SAE_DIR = shipped_sae_dir() / QWEN_SAE


def test_shipped_files_and_size():
    for name in (
        "cfg.json",
        "sae_weights.safetensors",
        "README.md",
        "MODEL_CARD.md",
        FEATURE_STATS_FILE,
        "heldout_texts.jsonl",
    ):
        assert (SAE_DIR / name).is_file(), name
    assert (SAE_DIR / "sae_weights.safetensors").stat().st_size <= 20_000_000  # the 20 MB budget, in fp16
    cfg = json.loads((SAE_DIR / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["hook_layer"], cfg["model_name"]) == (
        "topk",
        896,
        12,
        "qwen2.5-coder-0.5b",
    )
    assert cfg["k"] <= 64 and cfg["dtype"] == "float16"


def test_feature_stats_never_active_at_most_10_percent(qwen_sae):
    stats = FeatureStats.load(SAE_DIR / FEATURE_STATS_FILE)
    assert stats.d_sae == qwen_sae.d_sae and stats.n_tokens >= 50_000
    assert stats.dead.mean() <= 0.10, f"{stats.dead.mean():.1%} of latents never active over {stats.n_tokens} tokens"


def test_shipped_eval_set_is_held_out_and_mixed():
    rows = [json.loads(line) for line in (SAE_DIR / "heldout_texts.jsonl").read_text(encoding="utf-8").splitlines()]
    sources = {r["source"].split(":")[0] for r in rows}
    assert {"debian-zh_CN", "debian"} <= sources and any("code" in r["source"] or "stdlib" in r["source"] for r in rows)
    corpus = qscope_home() / "corpora" / "qwen_sae_corpus.parquet"
    if not corpus.exists():
        pytest.skip(f"{corpus} not built here (scripts/build_qwen_sae_corpus.py): cannot compare with the train split")
    import pyarrow.parquet as pq

    table = pq.read_table(corpus, columns=["text", "split"]).to_pydict()
    train = {" ".join(t.split()) for t, s in zip(table["text"], table["split"]) if s == "train"}
    assert not [r["id"] for r in rows if " ".join(r["text"].split()) in train]


def test_eval_sae_default_texts_are_the_sae_own_set():
    texts = load_texts(None, sae_dir=SAE_DIR)
    assert texts.source == f"{QWEN_SAE}/heldout_texts.jsonl" and len(texts.texts) > 100


@pytest.mark.slow
def test_meets_the_quality_bars_on_held_out_text(qwen_lm, qwen_sae):
    from qscope.evaluation import evaluate_sae

    result = evaluate_sae(qwen_lm, qwen_sae, load_texts(None, sae_dir=SAE_DIR), n_tokens=4096, max_length=256)
    assert result.layer == 12 and result.n_tokens >= 4000
    assert result.explained_variance >= 0.70 and result.l0 <= 64 and result.ce_loss_recovered >= 0.80, result


def test_qwen_scope_export_reads_real_residuals_identically(qwen_lm, qwen_sae, tmp_path):
    repo = tmp_path / qwen_scope_repo_name("Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ", qwen_sae.d_sae, qwen_sae.cfg.k)
    file = save_qwen_scope(qwen_sae, repo)
    texts = [
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
        "今天天气很好，我们去公园散步。",
        "The transceiver tunes the dipole antenna on the 40 m band.",
    ]
    res = qwen_lm.residuals(texts, [12])
    mask = res.attention_mask.bool()
    mask[:, 0] = False
    x = res.hidden[12][mask]
    ours = qwen_sae.encode(x)
    for loaded in (load_sae(file), load_sae(repo, layer=12), load_sae(file, k=qwen_sae.cfg.k)):
        theirs = loaded.encode(x)
        assert loaded.cfg.model_name == "Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ"  # the embedded model's hub id
        same = [
            set(a[v > 0].tolist()) == set(b[w > 0].tolist())
            for a, v, b, w in zip(ours.indices, ours.values, theirs.indices, theirs.values)
        ]
        assert all(same), f"{same.count(False)} of {len(same)} tokens select other features"
        torch.testing.assert_close(loaded(x), qwen_sae(x), rtol=1e-3, atol=1e-3)
