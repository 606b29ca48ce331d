"""expand end to end on tiny inputs (in-process and on real local Ray), and its bad-input behaviour."""

import json

import pyarrow.parquet as pq
import pytest

from qscope.errors import InputError, SAELoadError
from qscope.pipelines import expand
from qscope.report.schema import OUTPUT_COLUMNS


def _check_output(out_dir, result):
    t = pq.read_table(out_dir / "samples.parquet")
    assert result["rows"] == t.num_rows > 0
    assert (out_dir / "_SUCCESS").exists() and (out_dir / "report.html").exists()
    assert set(t["source"].to_pylist()) <= {"synthesized", "mined"}
    documented = {c for c, _, _ in OUTPUT_COLUMNS}
    for col in (
        "id",
        "text",
        "source",
        "target_score",
        "seed_score",
        "seed_ids",
        "target_features",
        "strength",
        "engine",
        "model",
        "sae",
        "layer",
        "qscope_version",
        "run_id",
        "feature_ids",
        "tokens",
        "token_target_act",
    ):
        assert col in t.column_names and col in documented
    for c, typ, _ in OUTPUT_COLUMNS:
        if c in t.column_names:
            assert t.schema.field(c).type == typ, c
    md = t.schema.metadata
    assert json.loads(md[b"qscope.targets"]) == result["targets"]
    scores = t["seed_score"].to_pylist()  # best first by the seed classifier (what the filter reads)
    assert scores == sorted(scores, reverse=True)
    targets = json.loads((out_dir / "targets.json").read_text())
    assert [x["feature"] for x in targets["targets"]] == result["targets"]
    html = (out_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "Target features" in html and "Output schema" in html
    assert not [p for p in out_dir.rglob("*") if ".tmp-" in str(p)]
    # The report names the target features: label, quality, dashboard link (labelled in a worker, not the driver)
    notes = {n["feature"]: n for n in json.loads((out_dir / "_feature_notes.json").read_text())}
    assert set(notes) == set(result["targets"])
    for f, n in notes.items():
        assert n["label"] and n["dashboard"] == f"dashboards/feature-{f}.html" and (out_dir / n["dashboard"]).exists()
        assert f'<a href="dashboards/feature-{f}.html">{f}</a>' in html
    assert 'class="lab"' in html or any(html.count(n["label"].split()[0]) for n in notes.values())
    return t


def test_expand_in_process(tiny_expand_config):
    cfg = tiny_expand_config()
    result = expand.run(expand.build_plan(cfg))
    t = _check_output(cfg.out_path if hasattr(cfg, "out_path") else __import__("pathlib").Path(cfg.out), result)
    syn = [r for r in t.to_pylist() if r["source"] == "synthesized"]
    assert syn and cfg.synthesis.n_shots == 8  # the default; the tiny run has 6 seeds, so each prompt shows them all
    for r in syn:
        assert r["engine"] == "hf" and len(r["seed_ids"]) == 6
        assert (r["strength"] == 0.0) == (r["target_features"] == [])
    c = result["counts"]
    assert c["seeds"] == 6 and c["corpus"] == 24 and c["generated"] == 2


@pytest.mark.slow
def test_expand_on_local_ray(ray_local, tiny_expand_config):
    cfg = tiny_expand_config(executor="ray")
    result = expand.run(expand.build_plan(cfg))
    _check_output(__import__("pathlib").Path(cfg.out), result)


def _no_output(cfg):
    from pathlib import Path

    out = Path(cfg.out)
    assert not (out / "samples.parquet").exists() and not (out / "_SUCCESS").exists()
    assert not [p for p in out.rglob("*.parquet")] if out.exists() else True


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b'{"text": "ok"}\n{oops\n', "line 2 is not valid JSON"),
        (b'{"body": "no text column"}\n', "no 'text' column"),
        ('{"text": "r\u00e9sum\u00e9"}\n'.encode("latin-1"), "not valid UTF-8"),
    ],
)
def test_bad_seed_file_fails_cleanly_without_output(tiny_expand_config, tmp_path, content, match):
    seeds = tmp_path / "bad_seeds.jsonl"
    seeds.write_bytes(content)
    cfg = tiny_expand_config(seeds=str(seeds))
    with pytest.raises(InputError, match=match):
        expand.run(expand.build_plan(cfg))
    _no_output(cfg)


def test_missing_corpus_and_bad_sae_fail_cleanly(tiny_expand_config, tmp_path):
    cfg = tiny_expand_config(corpus=str(tmp_path / "missing.jsonl"))
    with pytest.raises(InputError, match="corpus path .* does not exist"):
        expand.run(expand.build_plan(cfg))
    _no_output(cfg)
    cfg = tiny_expand_config()
    cfg.model.sae = str(tmp_path / "no-such-sae")
    with pytest.raises(SAELoadError):
        expand.run(expand.build_plan(cfg))
    _no_output(cfg)


def test_cli_reports_bad_input_in_one_line(tiny_expand_config, tmp_path, capsys):
    from qscope.cli import main

    cfg = tiny_expand_config()
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["run", str(path), "--seeds", str(empty), "--json"]) == 2
    err = json.loads(capsys.readouterr().out)
    assert err["error"] == "InputError" and "empty" in err["message"]
    assert main(["run", str(path), "--plan"]) == 0
    assert "SteeredGenerate" in capsys.readouterr().out


def test_corpus_signatures_and_index_are_kept_and_reused(tiny_expand_config, tmp_path, demo_subset):
    from pathlib import Path

    import pyarrow.dataset as pads

    from qscope.index import SignatureIndex
    from qscope.pipelines.expand import INDEX_DIR, SIGNATURES_DIR
    from qscope.signatures import SignatureMeta

    cfg = tiny_expand_config()
    cfg.synthesis.n_samples = 0  # mining only: the corpus store is what is tested
    first = expand.run(expand.build_plan(cfg))
    out = Path(cfg.out)
    store = out / SIGNATURES_DIR
    sigs = pads.dataset(store, partitioning="hive", exclude_invalid_files=True).to_table()
    assert sigs.num_rows == 24 and first["corpus_signatures"] == str(store)
    assert first["counts"]["corpus_reused"] == 0
    meta = SignatureMeta(**json.loads((store / "_manifest.json").read_text())["meta"])
    index = SignatureIndex.load(out / INDEX_DIR, expect=meta)  # kNN over the corpus without re-encoding it
    hits = index.search(sigs["feature_ids"][:1], sigs["feature_values"][:1], k=1)
    assert hits.ids[0, 0] == sigs["id"][0].as_py() and hits.scores[0, 0] > 0.99

    # other seeds, same corpus, the first run's store: nothing is encoded again
    seeds = tmp_path / "seeds2.jsonl"
    seeds.write_text("".join((demo_subset / "seeds.jsonl").read_text().splitlines(keepends=True)[:4]))
    again = tiny_expand_config(seeds=str(seeds), corpus_signatures=str(store), out=str(tmp_path / "out2"))
    again.synthesis = cfg.synthesis
    second = expand.run(expand.build_plan(again))
    assert second["counts"]["corpus_reused"] == 24 and second["corpus_signatures"] == str(store)

    # a store built with another SAE is refused before any encoding, naming what differs
    other = tiny_expand_config(corpus_signatures=str(store), out=str(tmp_path / "out3"))
    other.signatures.top_n = 32
    with pytest.raises(InputError, match="built with top_n=64"):
        expand.run(expand.build_plan(other))


def test_filter_reads_the_seed_classifier_for_synthesized_rows_only(tiny_expand_config):
    import pyarrow as pa

    from qscope.pipelines.expand import filter_mask

    table = pa.table(
        {
            "text": ["a ham radio logger for operators"] * 4,
            "source": ["synthesized", "synthesized", "mined", "mined"],
            "target_score": pa.array([0.9, 0.9, 0.9, 0.9], pa.float32()),
            "seed_similarity": pa.array([0.5] * 4, pa.float32()),
            "seed_score": pa.array([0.2, 0.7, 0.2, None], pa.float32()),
        }
    )
    from qscope.pipelines.config import ExpandConfig

    defaults = ExpandConfig.from_dict({"seeds": "s.jsonl", "corpus": "c.jsonl", "out": "o"})
    assert defaults.filter.min_seed_score == "auto"  # on by default (measured: more often on target)
    cfg = tiny_expand_config()
    assert cfg.filter.min_seed_score is None  # the tiny test config turns it off
    cfg.filter.min_seed_score = "auto"
    # synthesized rows need seed_score >= the cut-off; mined rows passed their own (mining.min_score)
    assert filter_mask(cfg, table, 0.5).tolist() == [False, True, True, True]
    assert filter_mask(cfg, table, 0.1).tolist() == [True, True, True, True]
    cfg.filter.min_seed_score = 0.8  # a number overrides the estimated cut-off
    assert filter_mask(cfg, table, 0.1).tolist() == [False, False, True, True]
    cfg.filter.min_seed_score = None  # off
    assert filter_mask(cfg, table, 0.9).all()
    cfg.filter.min_target_score = 0.95  # the text and target checks still apply to every row
    assert not filter_mask(cfg, table, 0.0).any()


def test_config_accepts_auto_and_rejects_other_words():
    from qscope.pipelines.config import ExpandConfig

    base = {"seeds": "s.jsonl", "corpus": "c.jsonl", "out": "o"}
    cfg = ExpandConfig.from_dict({**base, "synthesis": {"strengths": "auto"}, "mining": {"min_score": "auto"}})
    assert cfg.synthesis.strengths == "auto" and cfg.mining.min_score == "auto"
    for bad in (
        {"synthesis": {"strengths": "best"}},
        {"mining": {"min_score": "high"}},
        {"mining": {"target_precision": 1.5}},
        {"filter": {"min_seed_score": "yes"}},
    ):
        with pytest.raises(InputError):
            ExpandConfig.from_dict({**base, **bad})


def test_auto_cutoff_and_auto_strength_in_a_run(tiny_expand_config):
    cfg = tiny_expand_config()
    cfg.mining.min_score = "auto"
    cfg.filter.min_seed_score = "auto"
    cfg.synthesis.strengths = "auto"
    cfg.synthesis.auto_strengths = [0.0, 2.0]
    cfg.synthesis.pilot_samples = 1
    plan = expand.build_plan(cfg)
    assert "cutoff" in plan.names and plan.names.index("choose_strength") < plan.names.index("build_prompts")
    result = expand.run(plan)
    q = result["quality"]
    cut = q["cutoff"]
    assert cut["target_precision"] == 0.8 and cut["corpus_rows"] == 24 and 0 <= cut["est_rows"] <= 24
    assert [p["strength"] for p in q["strength_pilot"]] == [0.0, 2.0] and all(p["n"] == 1 for p in q["strength_pilot"])
    assert q["strengths"] in ([0.0], [2.0])
    t = pq.read_table(__import__("pathlib").Path(cfg.out) / "samples.parquet")
    for r in t.to_pylist():
        if r["source"] == "mined":
            assert r["mine_score"] >= cut["cutoff"] - 1e-4  # mined with the estimated cut-off
        else:
            assert r["strength"] == q["strengths"][0]
            assert r["seed_score"] >= cut["cutoff"] - 1e-4  # filter.min_seed_score: auto
    assert "seeds (held-out)" in q["seed_score"]
