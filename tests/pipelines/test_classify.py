"""classify: one score per corpus row (single class) or one per class, via the CLI, in-process and on Ray; bad rows
set aside; outputs only the result at the result path; one run per output."""

import json
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from qscope.cli import main


def test_classify_cli_several_classes_in_process(tmp_path, demo_subset, classify_inputs, cli):
    seeds = tmp_path / "seeds.jsonl"
    corpus = [json.loads(x) for x in (demo_subset / "corpus.jsonl").read_text().splitlines()]
    label = {r["id"]: "ham" if r["section"] == "hamradio" else "other" for r in corpus}
    seeds.write_text(
        "".join(json.dumps({"text": r["text"], "label": label[r["id"]]}) + "\n" for r in corpus[:2] + corpus[-2:])
    )
    out = tmp_path / "labels.parquet"
    res = cli("classify", out=out, executor="local", **(classify_inputs | {"seeds": seeds}))
    t = pq.read_table(out)
    classes = ["ham", "other"]
    assert res["rows"] == t.num_rows == len(corpus) and res["classes"] == classes
    assert t["id"].to_pylist() == [r["id"] for r in corpus]  # in-process: corpus order
    assert [c for c in t.column_names if c.startswith("score_")] == [f"score_{c}" for c in classes]
    pred = t["predicted_label"].to_pylist()
    assert pred[0] == "ham" and pred[-1] == "other"  # the seeds' own texts
    assert t.schema.metadata[b"qscope.sae"].decode().startswith("test/")
    assert t.schema.metadata[b"qscope.run_id"].decode() == res["run_id"]
    side = tmp_path / "labels.parquet.qscope"
    assert json.loads((side / "_SUCCESS").read_text())["run_id"] == res["run_id"]
    assert (side / "_seed_model" / "seed_model.json").exists() and (side / "_signatures" / "_manifest.json").exists()


def test_classify_single_class_on_ray_to_a_directory(ray_local, tmp_path, classify_inputs, cli, capsys):
    out = tmp_path / "scores"  # no .parquet suffix: a directory of Parquet parts, and nothing else
    rc = main(cli.args("classify", out=out, **classify_inputs))
    assert rc == 0 and "wrote 24 scored rows" in capsys.readouterr().out
    assert all(p.suffix == ".parquet" for p in out.iterdir())
    for t in (pads.dataset(out).to_table(), pl.read_parquet(out).to_arrow()):
        assert t.column_names[:2] == ["id", "score"] and t.num_rows == 24
        s = t["score"].to_numpy()
        assert ((s >= 0) & (s <= 1.0001)).all()


def test_bad_rows_are_set_aside_until_max_bad_fraction(tmp_path, demo_subset, classify_inputs, cli):
    corpus = tmp_path / "corpus.jsonl"
    good = (demo_subset / "corpus.jsonl").read_text()
    corpus.write_text(good + '{"id": "broken", "text": \n' + json.dumps({"id": "blank", "text": " "}) + "\n")
    out = tmp_path / "labels.parquet"
    args = {"out": out, "executor": "local", **classify_inputs, "corpus": corpus}
    err = cli("classify", rc=2, **args)  # 1 bad row of 26 is past the default 1%: clear error, no _SUCCESS
    assert err["error"] == "BadRowsError" and "max_bad_fraction" in err["message"]
    side = tmp_path / "labels.parquet.qscope"
    assert not out.exists() and not (side / "_SUCCESS").exists()
    rejected = pq.read_table(side / "_rejected").to_pylist()
    assert {r["id"]: r["reject_reason"][:14] for r in rejected} == {
        "corpus:24": "not valid JSON",
        "blank": "empty text",
    }

    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_bad_fraction: 0.05\n")
    res = cli("classify", config=cfg, **args)
    assert res["rows"] == 24 and res["rejected"] == 2 and res["bad"] == 1 and pq.read_table(out).num_rows == 24
    assert res["files_encoded"] == 0  # the failed run's encoding was kept in the store


def test_two_runs_on_one_output(tmp_path, classify_inputs, cli):
    """A second classify on the same output is refused at once and names the run holding it."""
    out = tmp_path / "labels.parquet"
    base = [
        sys.executable,
        "-m",
        "qscope.cli",
        *cli.args("classify", out=out, executor="local", json=True, **classify_inputs),
    ]
    first = subprocess.Popen(base, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lock = tmp_path / "labels.parquet.qscope" / "_lock"
    deadline = time.time() + 120
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(base, capture_output=True, text=True, timeout=300)
    first_out, _ = first.communicate(timeout=600)
    assert first.returncode == 0 and json.loads(first_out)["rows"] == 24
    err = json.loads(second.stdout)
    assert second.returncode == 2 and err["error"] == "OutputBusyError"
    assert json.loads(first_out)["run_id"] in err["message"]


@pytest.mark.parametrize("bad", ["labels.parquet/", "notes"])
def test_result_path_that_holds_other_files_is_refused(tmp_path, classify_inputs, cli, bad):
    target = tmp_path / bad.rstrip("/")
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    cli("classify", out=target, executor="local", rc=2, **classify_inputs)
    assert (target / "keep.txt").read_text() == "user data"


def test_progress_is_reported_on_stderr(tmp_path, classify_inputs, cli, capsys, monkeypatch):
    from qscope.pipelines import progress

    monkeypatch.setattr(progress, "INTERVAL_S", 0.05)
    rc = main(cli.args("classify", out=tmp_path / "x.parquet", executor="local", json=True, **classify_inputs))
    captured = capsys.readouterr()
    assert rc == 0 and json.loads(captured.out)["throughput"]["encode_corpus"]["rows"] == 24
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("[qscope] encode_corpus:")]
    assert lines and "24 rows" in lines[-1] and "rows/s" in lines[-1] and "done in" in lines[-1]
    assert any("classify: 24 / 24 rows (100.0%)" in ln for ln in captured.err.splitlines())


def test_a_huggingface_datasets_directory_is_a_corpus(tmp_path, demo_subset, classify_inputs, cli):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(x) for x in (demo_subset / "corpus.jsonl").read_text().splitlines()]
    datasets.Dataset.from_list([{"doc": r["id"], "body": r["text"]} for r in rows]).save_to_disk(str(tmp_path / "hf"))
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"body": r["text"]}) + "\n" for r in rows[:3]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("text_column: body\nid_column: doc\n")
    inputs = classify_inputs | {"seeds": seeds, "corpus": tmp_path / "hf"}
    res = cli("classify", out=tmp_path / "o.parquet", config=cfg, executor="local", **inputs)
    assert res["rows"] == 24
    assert sorted(pq.read_table(tmp_path / "o.parquet")["id"].to_pylist()) == sorted(r["id"] for r in rows)


def test_classify_keeps_the_mean_hidden_state_and_its_probe_reads_it(tmp_path, demo_config):
    """By default classify stores each row's mean hidden state beside its signature, and the seed model's probe reads
    both and the rows' texts (bench/README.md, "Issue 14, item 5"); a store built without the hidden state is
    refused with the setting named, and `signatures.hidden_mean: false` gives the signature + text probe."""

    from qscope.errors import InputError
    from qscope.pipelines import classify
    from qscope.pipelines.config import ClassifyConfig
    from qscope.seed_model import SeedModel, seed_scores

    out = tmp_path / "labels.parquet"
    store = tmp_path / "store"
    cfg = ClassifyConfig.from_dict({**demo_config, "out": str(out), "corpus_signatures": str(store)})
    classify.run(classify.build_plan(cfg))
    rows = pads.dataset(store, format="parquet", partitioning="hive").to_table(columns=["hidden_mean"])
    assert rows.num_rows > 0 and rows["hidden_mean"].null_count == 0 and len(rows["hidden_mean"][0]) > 0
    model = SeedModel.load(tmp_path / "labels.parquet.qscope" / "_seed_model")  # survives save / load
    assert model.meta.hidden_mean and model.seeds.hidden_mean and model.background["hidden_mean"]
    assert model.classifier().uses_dense
    # ... and the texts (the TF-IDF view): the background sample's texts are the store's texts of those rows
    stored = pads.dataset(store, format="parquet", partitioning="hive").to_table(
        columns=["id", "text", "feature_ids", "feature_values", "hidden_mean", "reject_reason"]
    )
    stored = stored.filter(pads.field("reject_reason").is_null())
    text_of = dict(zip(stored["id"].to_pylist(), stored["text"].to_pylist()))
    assert model.seeds.texts and model.background["text"] == [text_of[i] for i in model.background["ids"]]
    clf = model.classifier()
    assert clf.uses_text
    result = pq.read_table(out)
    expected = dict(zip(stored["id"].to_pylist(), seed_scores(clf, stored).scores[:, 0]))
    np.testing.assert_allclose(result["score"].to_numpy(), [expected[i] for i in result["id"].to_pylist()], rtol=1e-5)
    seeds_s, bg_s = model.heldout_scores(folds=3)
    assert len(seeds_s) == len(model.seeds.ids) and np.isfinite(bg_s).all()

    plain = {**demo_config, "out": str(tmp_path / "plain.parquet"), "corpus_signatures": str(store)}
    plain["signatures"] = {"pooling": "sum", "top_n": 256, "hidden_mean": False}
    with pytest.raises(InputError, match="hidden_mean=True"):  # the store was built with it: refused, not mixed
        classify.run(classify.build_plan(ClassifyConfig.from_dict(plain)))
    plain["reencode"] = True
    classify.run(classify.build_plan(ClassifyConfig.from_dict(plain)))
    model = SeedModel.load(tmp_path / "plain.parquet.qscope" / "_seed_model")
    assert not model.meta.hidden_mean and model.seeds.hidden_mean is None and not model.classifier().uses_dense
    assert model.classifier().uses_text
