"""The signature store: encode once, reuse by file key + fingerprint, refuse other encoder settings by name."""

import dataclasses
import json
import shutil

import pytest

from qscope.errors import InputError
from qscope.pipelines import classify
from qscope.pipelines.config import ClassifyConfig
from qscope.pipelines.sources import resolve_corpus
from qscope.pipelines.store import MANIFEST, SignatureStore
from qscope.signatures import SignatureMeta

META = SignatureMeta("m", "sae", 3, "max", 16, 64, sae_hash="abc", max_length=32)


def _config(tmp_path, sae_dir, demo_subset, corpus, **over):
    cfg = ClassifyConfig.from_dict(
        {
            "seeds": str(demo_subset / "seeds.jsonl"),
            "corpus": str(corpus),
            "out": str(tmp_path / "labels.parquet"),
            "executor": "local",
            "model": {"sae": str(sae_dir), "max_length": 24},
        }
    )
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def test_plan_reuses_unchanged_files_and_forgets_deleted_ones(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    for name in ("a", "b"):
        (corpus / f"{name}.jsonl").write_text(json.dumps({"text": name}) + "\n")
    src = resolve_corpus(str(corpus))
    with SignatureStore.open(tmp_path / "store", META, "r1") as store:
        plan = store.plan(src)
        assert [f.key for f in plan.encode] == ["a.jsonl", "b.jsonl"] and not plan.reuse
        store.commit(plan, src, store.staging())
    (corpus / "a.jsonl").touch()  # new mtime, same bytes: the sha256 says unchanged
    (corpus / "b.jsonl").unlink()
    (corpus / "c.jsonl").write_text(json.dumps({"text": "c"}) + "\n")
    src = resolve_corpus(str(corpus))
    with SignatureStore.open(tmp_path / "store", META, "r2") as store:
        plan = store.plan(src)
        assert plan.reuse == ["a.jsonl"] and [f.key for f in plan.encode] == ["c.jsonl"] and plan.remove == ["b.jsonl"]


@pytest.mark.parametrize(
    "field,value", [("sae_hash", "other-weights"), ("top_n", 8), ("max_length", 64), ("layer", 4), ("pooling", "sum")]
)
def test_other_encoder_settings_are_refused_by_name(tmp_path, field, value):
    with SignatureStore.open(tmp_path, META, "r1") as store:
        store.write_manifest()
    other = dataclasses.replace(META, **{field: value})
    with pytest.raises(InputError, match=rf"built with {field}=.*reencode"):
        SignatureStore.open(tmp_path, other, "r2")
    SignatureStore.open(tmp_path, other, "r3", reencode=True).close()


def test_rerun_with_new_seeds_encodes_nothing_and_an_edit_only_its_file(tmp_path, sae_dir, demo_subset):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = (demo_subset / "corpus.jsonl").read_text().splitlines(keepends=True)
    (corpus / "a.jsonl").write_text("".join(lines[:12]))
    (corpus / "b.jsonl").write_text("".join(lines[12:]))
    first = classify.run(classify.build_plan(_config(tmp_path, sae_dir, demo_subset, corpus)))
    assert first["files_encoded"] == 2 and first["rows"] == 24
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(lines[:3]))  # other seeds: the corpus is not encoded again
    again = classify.run(classify.build_plan(_config(tmp_path, sae_dir, demo_subset, corpus, seeds=str(seeds))))
    assert again["files_encoded"] == 0 and again["files_reused"] == 2 and again["rows"] == 24
    (corpus / "b.jsonl").write_text("".join(lines[12:20]))  # an edit: only that file, and its rows follow it
    edited = classify.run(classify.build_plan(_config(tmp_path, sae_dir, demo_subset, corpus)))
    assert edited["files_encoded"] == 1 and edited["rows"] == 20
    # the same corpus under another root (a `ray job submit --working-dir` upload): keys are relative, reused
    moved = tmp_path / "elsewhere"
    shutil.copytree(corpus, moved, copy_function=shutil.copyfile)  # new mtimes: the sha256 decides
    store = tmp_path / "labels.parquet.qscope" / "_signatures"
    manifest = json.loads((store / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["a.jsonl", "b.jsonl"]
    cfg = _config(tmp_path, sae_dir, demo_subset, moved, hash_files=True)
    assert classify.run(classify.build_plan(cfg))["files_encoded"] == 0
