"""Model card contents, the texts loaders, and the `qscope eval-sae` command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qscope.cli import main
from qscope.errors import InputError
from qscope.evaluation import (
    JSON_KEYS,
    MODEL_CARD_FILE,
    SAEEvalResult,
    load_feature_stats,
    load_texts,
    render_model_card,
    write_model_card,
)
from qscope.evaluation.feature_stats import stats_from_codes


def _result(**kw):
    # The planted numbers of one eval run, grouped as the model card groups them.
    reconstruction = {"explained_variance": 0.8125, "mse": 0.0123, "l0": 31.5, "dead_fraction": 0.0625}
    downstream = {"ce_loss_recovered": 0.9031, "kl_div": 0.1717, "delta_lm_loss": 0.2049}
    losses = {"ce_clean": 3.1, "ce_spliced": 3.3049, "ce_zero_ablation": 5.2}
    source = {"sae": "planted/identity", "layer": 15, "model": "smollm2-135m", "text_source": "heldout.parquet"}
    counts = {"n_tokens": 4096, "n_loss_tokens": 4000, "n_texts": 12}
    base = {**reconstruction, **downstream, **losses, **source, **counts}
    return SAEEvalResult(**(base | kw))


def test_model_card_written_with_numbers(tmp_path, planted):
    sae = planted.identity(16, layer=3)
    stats = stats_from_codes([0, 1, 1], [1.0, 2.0, 4.0], d_sae=sae.d_sae, n_tokens=10)
    path = write_model_card(_result(layer=3), sae, tmp_path, feature_stats=stats, notes="trained for tests")
    assert path == tmp_path / MODEL_CARD_FILE
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_CARD_FILE]
    text = path.read_text()
    for snippet in (
        "0.8125",
        "31.5",
        "0.0625",
        "0.9031",
        "0.1717",
        "0.2049",
        "4,096",
        "heldout.parquet",
        "planted/identity",
        "after block 3",
        "Feature statistics",
        "trained for tests",
        '"d_sae": 32',
    ):
        assert snippet in text, snippet
    assert json.loads(text.split("```json")[-1].split("```")[0])["ce_loss_recovered"] == 0.9031


def test_model_card_nan(planted):
    text = render_model_card(_result(ce_loss_recovered=float("nan")), planted.identity(8))
    assert "| CE-loss recovered | n/a |" in text


def test_load_texts_formats(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "x": 1}\n{"text": "  "}\n')
    assert load_texts(tmp_path / "a.jsonl").texts == ["one", "two"]
    (tmp_path / "b.txt").write_text("para one\nline two\n\npara two\n")
    assert load_texts(tmp_path / "b.txt").texts == ["para one\nline two", "para two"]
    (tmp_path / "c.txt").write_text("l1\nl2\n")
    assert load_texts(tmp_path / "c.txt").texts == ["l1", "l2"]
    pq.write_table(
        pa.table({"text": ["tr", "ho", "ho2"], "split": ["train", "heldout", "heldout"]}), tmp_path / "d.parquet"
    )
    got = load_texts(tmp_path / "d.parquet")
    assert got.texts == ["ho", "ho2"] and "heldout" in got.source
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "e.parquet")
    assert load_texts(tmp_path / "e.parquet").texts == ["a", "b"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(InputError, match="bad.jsonl: line 2 is not valid JSON"):
        load_texts(tmp_path / "bad.jsonl")
    (tmp_path / "x.csv").write_text("id,text\n1,from csv\n")
    assert load_texts(tmp_path / "x.csv").texts == ["from csv"]
    with pytest.raises(InputError, match="unknown file type"):
        load_texts(tmp_path / "x.docx") if (tmp_path / "x.docx").write_text("a") else None
    with pytest.raises(InputError, match="does not exist"):
        load_texts(tmp_path / "missing.jsonl")
    # Sources are names, never this machine's paths: they go into shipped cards and feature statistics.
    assert got.source == "d.parquet (split=heldout)" and load_texts(tmp_path / "a.jsonl").source == "a.jsonl"


def test_default_texts_are_shipped_and_need_no_cache(tmp_path, monkeypatch):
    from qscope.evaluation.texts import SHIPPED_EVAL_NAME, shipped_eval_path

    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path / "empty-home"))
    got = load_texts(None)
    assert got.source == SHIPPED_EVAL_NAME and len(got.texts) > 500
    assert shipped_eval_path().is_relative_to(Path(__import__("qscope").__file__).parent)
    assert not (tmp_path / "empty-home").exists(), "loading the default texts must not need or create the cache"


def test_cli_eval_sae_json_card_and_stats(tmp_path, cli, lm, demo_texts, planted):
    sae_dir = planted.random_topk(lm.d_model, d_sae=128, k=8).save(tmp_path / "sae")
    texts = tmp_path / "t.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in demo_texts[:2]))
    out = cli("eval-sae", sae_dir, texts=texts, tokens=24, write_card=True, write_stats=True, stats_tokens=24)
    assert set(JSON_KEYS) <= set(out)
    assert out["layer"] == planted.layer and out["n_tokens"] >= 24
    card = (sae_dir / MODEL_CARD_FILE).read_text()
    assert f"{out['l0']:.4g}" in card and texts.name in card and str(tmp_path) not in card
    stats = load_feature_stats(sae_dir)
    assert stats.d_sae == 128 and stats.n_tokens >= 24
    # The SAE still loads, and rewriting it keeps card and statistics next to the weights.
    from qscope.sae import load_sae

    load_sae(str(sae_dir)).save(sae_dir)
    assert (sae_dir / MODEL_CARD_FILE).exists() and load_feature_stats(sae_dir).n_tokens == stats.n_tokens


def test_cli_eval_sae_without_texts_uses_the_shipped_set(tmp_path, capsys, monkeypatch, lm, planted):
    from qscope.evaluation.texts import SHIPPED_EVAL_NAME
    from qscope.models import LanguageModel

    monkeypatch.setattr(LanguageModel, "load", classmethod(lambda cls, *a, **k: lm))  # reuse the session model
    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path / "empty-home"))
    sae_dir = planted.random_topk(576, d_sae=64, k=4).save(tmp_path / "sae")
    assert main(["eval-sae", str(sae_dir), "--tokens", "64", "--json", "--write-stats", "--stats-tokens", "64"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text_source"] == SHIPPED_EVAL_NAME and out["n_tokens"] >= 64
    assert load_feature_stats(sae_dir).metadata["text_source"] == SHIPPED_EVAL_NAME


def test_shipped_artefacts_record_names_not_machine_paths():
    from qscope.sae.loading import shipped_sae_dir

    for sae_dir in shipped_sae_dir().iterdir():
        if (sae_dir / "feature_stats.safetensors").exists():
            source = load_feature_stats(sae_dir).metadata["text_source"]
            assert not source.startswith(("/", "~")) and "/.cache/" not in source, source
        card = sae_dir / MODEL_CARD_FILE
        if card.exists():
            assert "/root/" not in card.read_text() and "/home/" not in card.read_text()


@pytest.mark.slow
def test_eval_sae_json_on_a_fresh_machine(tmp_path):
    """`qscope eval-sae --json` with an empty QSCOPE_HOME: converts the embedded model, reads the shipped texts,
    prints one JSON document (the conversion's logs go to stderr)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "QSCOPE_HOME": str(tmp_path / "fresh-home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "qscope.cli", "-v", "eval-sae", "--tokens", "128", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["sae"] == "qscope/smollm2-135m-l15" and out["n_tokens"] >= 128 and out["explained_variance"] > 0.5


def test_cli_eval_sae_stats_from_an_activation_cache(tmp_path, capsys, monkeypatch, lm, demo_texts, planted):
    import numpy as np

    from qscope.models import LanguageModel
    from qscope.training.cache import write_activation_cache

    monkeypatch.setattr(LanguageModel, "load", classmethod(lambda cls, *a, **k: lm))  # reuse the session model
    sae_dir = planted.random_topk(lm.d_model, d_sae=64, k=4).save(tmp_path / "sae")
    texts = tmp_path / "t.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in demo_texts[:2]))
    x = np.random.default_rng(0).normal(size=(300, lm.d_model)).astype(np.float16)
    cache = write_activation_cache(tmp_path / "cache", {planted.layer: x})
    base = ["eval-sae", str(sae_dir), "--texts", str(texts), "--tokens", "24", "--json"]
    assert main([*base, "--stats-cache", str(cache)]) == 2  # without --write-stats: refused before evaluating
    assert "--stats-cache goes with --write-stats" in json.loads(capsys.readouterr().out)["message"]
    assert main([*base, "--write-stats", "--stats-cache", str(cache), "--stats-tokens", "250"]) == 0
    capsys.readouterr()
    stats = load_feature_stats(sae_dir)
    assert stats.n_tokens == 250 and "activation cache" in stats.metadata["text_source"]
