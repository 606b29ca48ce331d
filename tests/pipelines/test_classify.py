"""classify: one score per corpus row (single class) or one per class, via the CLI, in-process and on Ray."""

import json

import pyarrow.parquet as pq

from qscope.cli import main


def test_classify_cli_several_classes_in_process(tmp_path, sae_dir, demo_subset, capsys):
    seeds = tmp_path / "seeds.jsonl"
    corpus = [json.loads(x) for x in (demo_subset / "corpus.jsonl").read_text().splitlines()]
    label = {r["id"]: "ham" if r["section"] == "hamradio" else "other" for r in corpus}
    seeds.write_text("".join(json.dumps({"text": r["text"], "label": label[r["id"]]}) + "\n"
                             for r in corpus[:2] + corpus[-2:]))
    out = tmp_path / "labels.parquet"
    rc = main(["classify", "--seeds", str(seeds), "--corpus", str(demo_subset / "corpus.jsonl"), "--out", str(out),
               "--sae", str(sae_dir), "--max-length", "24", "--executor", "local", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    t = pq.read_table(out)
    classes = ["ham", "other"]
    assert res["rows"] == t.num_rows == len(corpus) and res["classes"] == classes
    assert t["id"].to_pylist() == [r["id"] for r in corpus]
    assert [c for c in t.column_names if c.startswith("score_")] == [f"score_{c}" for c in classes]
    pred = t["predicted_label"].to_pylist()
    assert pred[0] == "ham" and pred[-1] == "other"  # the seeds' own texts
    assert t.schema.metadata[b"qscope.sae"].decode().startswith("test/")


def test_classify_single_class_on_ray(ray_local, tmp_path, sae_dir, demo_subset, capsys):
    out = tmp_path / "scores.parquet"
    rc = main(["classify", "--seeds", str(demo_subset / "seeds.jsonl"), "--corpus",
               str(demo_subset / "corpus.jsonl"), "--out", str(out), "--sae", str(sae_dir), "--max-length", "24"])
    assert rc == 0 and "wrote 24 scored rows" in capsys.readouterr().out
    t = pq.read_table(out)
    assert t.column_names[:2] == ["id", "score"] and t.num_rows == 24
    s = t["score"].to_numpy()
    assert ((s >= 0) & (s <= 1.0001)).all()
